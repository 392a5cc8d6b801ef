// Builds the Pulumi CLI from the Go module proxy. pkg/v3's own go.mod
// carries replace lines that `go install` refuses, so this module pins the
// CLI and SDK at the same version instead.
module diskless-relays/tools/pulumi

go 1.25.11

replace github.com/atotto/clipboard => github.com/tgummerer/clipboard v0.0.0-20241001131231-d02d263e614e

require (
	github.com/pulumi/pulumi/pkg/v3 v3.248.0
	github.com/pulumi/pulumi/sdk/v3 v3.248.0
)
