// Command pulumi-tfgen-proxmoxve generates the Pulumi package schema and
// bridge metadata of the proxmoxve plugin:
//
//	pulumi-tfgen-proxmoxve schema --out DIR
//
// writes DIR/schema.json and DIR/bridge-metadata.json, which the
// pulumi-resource-proxmoxve build embeds. build.sh runs it.
package main

import (
	"diskless-relays/tools/proxmoxve/bridge"
	"diskless-relays/tools/proxmoxve/internal/version"

	"github.com/pulumi/pulumi-terraform-bridge/v3/pkg/pf/tfgen"
)

func main() {
	tfgen.MainWithMuxer("proxmoxve", bridge.Provider(version.Version, nil))
}
