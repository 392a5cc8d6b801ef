// Package codegen stands in for pulumi-yaml's PCL-to-YAML program generator.
//
// pulumi-terraform-bridge imports it to translate Terraform examples into
// Pulumi YAML while generating SDK docs. The proxmoxve plugin never does that
// (build.sh runs tfgen with --skip-examples and the plugin itself converts
// nothing), so the generator is replaced by one that reports it is missing.
package codegen

import (
	"errors"

	"github.com/hashicorp/hcl/v2"
	"github.com/pulumi/pulumi/pkg/v3/codegen/pcl"
)

// ErrUnavailable is returned by GenerateProgram.
var ErrUnavailable = errors.New("Pulumi YAML program generation is not built into this binary")

// GenerateProgram has the signature of pulumi-yaml's generator and always
// fails with ErrUnavailable.
func GenerateProgram(*pcl.Program) (map[string][]byte, hcl.Diagnostics, error) {
	return nil, nil, ErrUnavailable
}
