package main

import (
	"encoding/json"
	"fmt"
)

// withVersion returns the package schema with its "version" set. tfgen leaves
// the version out of schema.json so that the file does not depend on it; the
// engine and `pulumi package get-schema` expect it to be there.
func withVersion(schema []byte, version string) []byte {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(schema, &top); err != nil {
		panic(fmt.Sprintf("embedded schema.json is not a JSON object: %v", err))
	}
	v, err := json.Marshal(version)
	if err != nil {
		panic(err)
	}
	top["version"] = v
	out, err := json.Marshal(top)
	if err != nil {
		panic(err)
	}
	return out
}
