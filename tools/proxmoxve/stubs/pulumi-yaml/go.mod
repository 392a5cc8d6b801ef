// Stand-in for github.com/pulumi/pulumi-yaml, see README.md in the parent
// directory. Only the one function pulumi-terraform-bridge calls exists.
module github.com/pulumi/pulumi-yaml

go 1.26.0

require (
	github.com/hashicorp/hcl/v2 v2.24.0
	github.com/pulumi/pulumi/pkg/v3 v3.253.0
)
