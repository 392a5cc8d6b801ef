// Command pulumi-resource-proxmoxve is the Pulumi resource plugin for the
// proxmoxve package. Build it with tools/proxmoxve/build.sh, which first
// generates the two embedded files below with pulumi-tfgen-proxmoxve.
package main

import (
	"context"
	_ "embed"

	"diskless-relays/tools/proxmoxve/bridge"
	"diskless-relays/tools/proxmoxve/internal/version"

	pftfbridge "github.com/pulumi/pulumi-terraform-bridge/v3/pkg/pf/tfbridge"
)

var (
	//go:embed schema.json
	schema []byte
	//go:embed bridge-metadata.json
	metadata []byte
)

func main() {
	pftfbridge.MainWithMuxer(context.Background(), "proxmoxve",
		bridge.Provider(version.Version, metadata), withVersion(schema, version.Version))
}
