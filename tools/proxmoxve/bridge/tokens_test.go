package bridge

import "testing"

func TestTokens(t *testing.T) {
	resources := map[string]string{
		"proxmox_virtual_environment_vm":                   "proxmoxve:index/vmLegacy:VmLegacy",
		"proxmox_virtual_environment_file":                 "proxmoxve:index/fileLegacy:FileLegacy",
		"proxmox_virtual_environment_vm2":                  "proxmoxve:index/vm2Legacy:Vm2Legacy",
		"proxmox_virtual_environment_network_linux_bridge": "proxmoxve:network/linux/bridgeLegacy:BridgeLegacy",
		"proxmox_vm":              "proxmoxve:index/vm:Vm",
		"proxmox_sdn_zone_simple": "proxmoxve:sdn/zone/simple:Simple",
		"proxmox_backup_job":      "proxmoxve:backup/job:Job",
	}
	for tf, want := range resources {
		got, err := resourceToken(tf)
		if err != nil || string(got) != want {
			t.Errorf("resourceToken(%q) = %q, %v; want %q", tf, got, err, want)
		}
	}

	dataSources := map[string]string{
		"proxmox_virtual_environment_vm":         "proxmoxve:index/getVmLegacy:getVmLegacy",
		"proxmox_virtual_environment_datastores": "proxmoxve:index/getDatastoresLegacy:getDatastoresLegacy",
		"proxmox_hardware_mapping_pci":           "proxmoxve:hardware/mapping/getPci:getPci",
	}
	for tf, want := range dataSources {
		got, err := dataSourceToken(tf)
		if err != nil || string(got) != want {
			t.Errorf("dataSourceToken(%q) = %q, %v; want %q", tf, got, err, want)
		}
	}

	for _, bad := range []string{"aws_instance", "proxmox_", "proxmox_virtual_environment_2fa"} {
		if _, err := resourceToken(bad); err == nil {
			t.Errorf("resourceToken(%q) succeeded, want an error", bad)
		}
	}
}
