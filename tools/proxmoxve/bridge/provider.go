// Package bridge describes how bpg's Terraform provider for Proxmox VE maps
// onto the Pulumi package "proxmoxve", so that the resource plugin built from
// it can serve the published @muhlba91/pulumi-proxmoxve SDKs.
//
// Terraform resource and data source names become Pulumi tokens by a fixed
// rule (see splitTFName); provider configuration keys and resource properties
// take the bridge's default camelCase names (api_token -> apiToken,
// network_device -> networkDevices, ...).
package bridge

import (
	"context"
	"path"

	"github.com/bpg/terraform-provider-proxmox/fwprovider"
	sdkprovider "github.com/bpg/terraform-provider-proxmox/proxmoxtf/provider"
	pftfbridge "github.com/pulumi/pulumi-terraform-bridge/v3/pkg/pf/tfbridge"
	"github.com/pulumi/pulumi-terraform-bridge/v3/pkg/tfbridge"
	shim "github.com/pulumi/pulumi-terraform-bridge/v3/pkg/tfshim"
	shimv2 "github.com/pulumi/pulumi-terraform-bridge/v3/pkg/tfshim/sdk-v2"
)

// Provider returns the bridge description of the proxmoxve package at the
// given version. metadata is the content of bridge-metadata.json as written
// by the tfgen step (nil when running tfgen itself); the muxed runtime needs
// the dispatch table recorded there.
func Provider(version string, metadata []byte) tfbridge.ProviderInfo {
	ctx := context.Background()

	// bpg's provider is two Terraform providers under one name: the older
	// SDKv2 one (most proxmox_virtual_environment_* resources, including vm
	// and file) and the plugin-framework one (everything newer).
	sdkv2 := shimv2.NewProvider(sdkprovider.ProxmoxVirtualEnvironment())
	pf := fwprovider.New(version)()
	p := pftfbridge.MuxShimWithPF(ctx, sdkv2, pf)

	info := tfbridge.ProviderInfo{
		P:           p,
		Name:        "proxmox",
		Version:     version,
		DisplayName: "Proxmox Virtual Environment (Proxmox VE)",
		Description: "A Pulumi package for creating and managing Proxmox Virtual Environment cloud resources.",
		Keywords:    []string{"proxmox", "proxmoxve", "category/infrastructure"},
		License:     "Apache-2.0",
		Homepage:    "https://github.com/muhlba91/pulumi-proxmoxve",
		Repository:  "https://github.com/muhlba91/pulumi-proxmoxve",
		GitHubOrg:   "bpg",
		// The SDKs record this as the plugin's download source.
		PluginDownloadURL: "github://api.github.com/muhlba91/pulumi-proxmoxve",
		Config:            map[string]*tfbridge.SchemaInfo{},
		Resources:         map[string]*tfbridge.ResourceInfo{},
		DataSources:       map[string]*tfbridge.DataSourceInfo{},
		MetadataInfo:      tfbridge.NewProviderMetadata(metadata),
		JavaScript: &tfbridge.JavaScriptInfo{
			PackageName:          "@muhlba91/pulumi-proxmoxve",
			RespectSchemaVersion: true,
			Dependencies:         map[string]string{"@pulumi/pulumi": "^3.0.0"},
		},
		Python: &tfbridge.PythonInfo{
			PackageName:          "pulumi_proxmoxve",
			RespectSchemaVersion: true,
			Requires:             map[string]string{"pulumi": ">=3.0.0,<4.0.0"},
		},
		Golang: &tfbridge.GolangInfo{
			ImportBasePath: path.Join("github.com/muhlba91/pulumi-proxmoxve/sdk",
				tfbridge.GetModuleMajorVersion(version), "go", pkgName),
			GenerateResourceContainerTypes: true,
			RespectSchemaVersion:           true,
		},
		CSharp: &tfbridge.CSharpInfo{
			RespectSchemaVersion: true,
			Namespaces:           map[string]string{pkgName: "ProxmoxVE"},
		},
	}

	p.ResourcesMap().Range(func(name string, r shim.Resource) bool {
		if needsIDRename(name, r) {
			ri := &tfbridge.ResourceInfo{}
			renameID(ri)
			info.Resources[name] = ri
		}
		return true
	})

	info.MustComputeTokens(tokenStrategy())
	// Resources with a "name" input get a unique default (<resource name>-<suffix>)
	// when the program leaves it out, as in the published SDKs.
	info.SetAutonaming(255, "-")
	return info
}
