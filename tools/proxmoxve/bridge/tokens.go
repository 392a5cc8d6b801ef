package bridge

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/pulumi/pulumi-terraform-bridge/v3/pkg/tfbridge"
	"github.com/pulumi/pulumi/sdk/v3/go/common/tokens"
)

const (
	pkgName     = "proxmoxve"
	indexModule = "index"

	// bpg's old resource names. Everything under this prefix is mapped with a
	// "Legacy" suffix, because the same resource usually also exists under the
	// newer "proxmox_" prefix.
	legacyPrefix = "proxmox_virtual_environment_"
	modernPrefix = "proxmox_"
)

// splitTFName turns a Terraform type name into the Pulumi module and member
// name used by the @muhlba91/pulumi-proxmoxve SDKs:
//
//	proxmox_virtual_environment_vm            -> ("index", "VmLegacy")
//	proxmox_virtual_environment_network_linux_bridge -> ("network/linux", "BridgeLegacy")
//	proxmox_sdn_zone_simple                   -> ("sdn/zone", "Simple")
//	proxmox_vm                                -> ("index", "Vm")
//
// The last underscore-separated word is the member, the words before it (if
// any) form a nested module path, and a single word lands in "index".
func splitTFName(tfName string) (module, member string, err error) {
	var rest string
	legacy := false
	switch {
	case strings.HasPrefix(tfName, legacyPrefix):
		rest, legacy = strings.TrimPrefix(tfName, legacyPrefix), true
	case strings.HasPrefix(tfName, modernPrefix):
		rest = strings.TrimPrefix(tfName, modernPrefix)
	default:
		return "", "", fmt.Errorf("%q does not start with %q", tfName, modernPrefix)
	}

	words := strings.Split(rest, "_")
	for _, w := range words {
		if w == "" {
			return "", "", fmt.Errorf("%q has an empty name segment", tfName)
		}
	}
	last := words[len(words)-1]
	if len(words) == 1 {
		module = indexModule
	} else {
		module = strings.Join(words[:len(words)-1], "/")
	}
	if startsWithDigit(module) || startsWithDigit(last) {
		return "", "", fmt.Errorf("%q maps to a Pulumi name starting with a digit", tfName)
	}

	member = upperFirst(last)
	if legacy {
		member += "Legacy"
	}
	return module, member, nil
}

func startsWithDigit(s string) bool {
	r, _ := utf8.DecodeRuneInString(s)
	return unicode.IsDigit(r)
}

func upperFirst(s string) string {
	r, n := utf8.DecodeRuneInString(s)
	return string(unicode.ToUpper(r)) + s[n:]
}

// resourceToken is the Pulumi type token of a Terraform resource, for
// example proxmoxve:index/vmLegacy:VmLegacy.
func resourceToken(tfName string) (tokens.Type, error) {
	module, member, err := splitTFName(tfName)
	if err != nil {
		return "", err
	}
	return tfbridge.MakeResource(pkgName, module, member), nil
}

// dataSourceToken is the Pulumi function token of a Terraform data source,
// for example proxmoxve:index/getVmLegacy:getVmLegacy.
func dataSourceToken(tfName string) (tokens.ModuleMember, error) {
	module, member, err := splitTFName(tfName)
	if err != nil {
		return "", err
	}
	return tfbridge.MakeDataSource(pkgName, module, "get"+member), nil
}

// tokenStrategy fills in the token of every resource and data source that has
// no explicit mapping yet.
func tokenStrategy() tfbridge.Strategy {
	return tfbridge.Strategy{
		Resource: func(tfName string, r *tfbridge.ResourceInfo) error {
			if r.Tok != "" {
				return nil
			}
			tok, err := resourceToken(tfName)
			r.Tok = tok
			return err
		},
		DataSource: func(tfName string, d *tfbridge.DataSourceInfo) error {
			if d.Tok != "" {
				return nil
			}
			tok, err := dataSourceToken(tfName)
			d.Tok = tok
			return err
		},
	}
}
