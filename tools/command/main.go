// Command pulumi-resource-command is a from-scratch implementation of the
// Pulumi command provider's local:Command resource (and local:run function),
// speaking the resource-provider gRPC protocol expected by @pulumi/command 1.2.1.
package main

import (
	"fmt"
	"os"
)

// version is what GetPluginInfo reports; build.sh sets it with
// -ldflags "-X main.version=...".
var version = "1.2.1"

func main() {
	if err := serve(os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "pulumi-resource-command: %v\n", err)
		os.Exit(1)
	}
}
