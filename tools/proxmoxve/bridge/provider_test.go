package bridge

import (
	"testing"

	shim "github.com/pulumi/pulumi-terraform-bridge/v3/pkg/tfshim"
)

// The resources the diskless-relays program uses must keep the tokens and
// names of @muhlba91/pulumi-proxmoxve.
func TestProviderMapping(t *testing.T) {
	info := Provider("8.6.0", nil)

	for tf, tok := range map[string]string{
		"proxmox_virtual_environment_vm":   "proxmoxve:index/vmLegacy:VmLegacy",
		"proxmox_virtual_environment_file": "proxmoxve:index/fileLegacy:FileLegacy",
	} {
		r := info.Resources[tf]
		if r == nil || string(r.Tok) != tok {
			t.Errorf("%s is mapped to %v, want %s", tf, r, tok)
		}
	}

	info.P.ResourcesMap().Range(func(name string, _ shim.Resource) bool {
		if r := info.Resources[name]; r == nil || r.Tok == "" {
			t.Errorf("resource %s has no token", name)
		}
		return true
	})

	// A PF resource whose id is a user input is published as resourceId.
	if f := info.Resources["proxmox_sdn_zone_simple"].Fields["id"]; f == nil || f.Name != "resourceId" {
		t.Errorf("proxmox_sdn_zone_simple id field = %+v, want resourceId", f)
	}
	if f := info.Resources["proxmox_sdn_controller_evpn"].Fields["id"]; f != nil && f.Name == "resourceId" {
		t.Errorf("proxmox_sdn_controller_evpn id must keep the bridge's name, got resourceId")
	}
}
