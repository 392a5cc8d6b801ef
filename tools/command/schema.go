package main

import "encoding/json"

// schemaJSON describes the part of the command package this plugin
// implements: the local Command resource and the local run function.
func schemaJSON(version string) (string, error) {
	str := func(desc string) map[string]any { return map[string]any{"type": "string", "description": desc} }
	strList := func(desc string) map[string]any {
		return map[string]any{"type": "array", "items": map[string]any{"type": "string"}, "description": desc}
	}
	base := map[string]any{
		"stdin":       str("Text passed to the command's standard input."),
		"logging":     map[string]any{"$ref": "#/types/command:local:Logging", "description": "Which output streams are streamed to the Pulumi log while the command runs (default: stdoutAndStderr). Capturing into stdout/stderr is unaffected."},
		"interpreter": strList("Program and leading arguments that run the command; defaults to [\"/bin/sh\", \"-c\"]."),
		"dir":         str("Working directory of the command; the command fails if it does not exist."),
		"environment": map[string]any{
			"type": "object", "additionalProperties": map[string]any{"type": "string"},
			"description": "Variables added to the plugin's own environment for the command.",
		},
		"assetPaths":             strList("Globs of files (relative to dir) returned as `assets` after the command succeeds."),
		"archivePaths":           strList("Globs of files (relative to dir) returned as one `archive` after the command succeeds."),
		"addPreviousOutputInEnv": map[string]any{"type": "boolean", "description": "Export the previous stdout/stderr as PULUMI_COMMAND_STDOUT/PULUMI_COMMAND_STDERR (default true)."},
	}
	baseOut := map[string]any{
		"stdout": str("Standard output of the last run, without its trailing newline."),
		"stderr": str("Standard error of the last run, without its trailing newline."),
		"assets": map[string]any{
			"type": "object", "additionalProperties": map[string]any{"$ref": "pulumi.json#/Asset"},
			"description": "Files selected by assetPaths, keyed by path relative to dir.",
		},
		"archive": map[string]any{"$ref": "pulumi.json#/Archive", "description": "Files selected by archivePaths."},
	}
	with := func(maps ...map[string]any) map[string]any {
		out := map[string]any{}
		for _, m := range maps {
			for k, v := range m {
				out[k] = v
			}
		}
		return out
	}
	lifecycle := map[string]any{
		"create":   str("Command run when the resource is created (and on update when `update` is not set)."),
		"update":   str("Command run when inputs change; `create` runs instead when this is not set."),
		"delete":   str("Command run when the resource is deleted."),
		"triggers": map[string]any{"type": "array", "items": map[string]any{"$ref": "pulumi.json#/Any"}, "description": "Any change to these values replaces the resource.", "replaceOnChanges": true},
	}
	commandInputs := with(base, lifecycle)
	runInputs := with(base, map[string]any{"command": str("The command to run.")})

	spec := map[string]any{
		"name":        "command",
		"displayName": "Command",
		"version":     version,
		"description": "Local Command resource and run function (diskless-relays' own implementation of the command provider's local:Command).",
		"types": map[string]any{
			"command:local:Logging": map[string]any{
				"type": "string",
				"enum": []any{
					map[string]any{"name": "stdout", "value": "stdout"},
					map[string]any{"name": "stderr", "value": "stderr"},
					map[string]any{"name": "stdoutAndStderr", "value": "stdoutAndStderr"},
					map[string]any{"name": "none", "value": "none"},
				},
			},
		},
		"resources": map[string]any{
			commandToken: map[string]any{
				"description":     "A command run locally on create, update and delete.",
				"inputProperties": commandInputs,
				"properties":      with(commandInputs, baseOut),
				"required":        []string{"stdout", "stderr"},
			},
		},
		"functions": map[string]any{
			runToken: map[string]any{
				"description": "Runs a command locally on every program run, preview included.",
				"inputs":      map[string]any{"type": "object", "properties": runInputs, "required": []string{"command"}},
				"outputs": map[string]any{
					"type": "object", "properties": with(runInputs, baseOut),
					"required": []string{"command", "stdout", "stderr"},
				},
			},
		},
	}
	b, err := json.Marshal(spec)
	return string(b), err
}
