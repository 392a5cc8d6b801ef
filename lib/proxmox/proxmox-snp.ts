/**
 * A measured direct boot of a relay's UKI on Proxmox VE: the VM settings the
 * program gives an SNP relay. How Proxmox VE turns them into QEMU's command
 * line is modelled for the tests in test/support/qemu-server-snp.ts. Pure.
 *
 * Proxmox VE's own SEV-SNP firmware (OVMF_SEV_4M.fd, built from
 * OvmfPkgX64.dsc) has no kernel-hashes table and measures nothing it boots.
 * So an SNP relay's VM names, in `args`, an AmdSevX64 OVMF and the UKI, both
 * uploaded to the datastore's ISO directory, and sets
 * `amd-sev: type=snp,kernel-hashes=1,no-debug=1`: QEMU then puts the UKI's
 * hashes into the firmware's table, and the launch measurement covers it.
 *
 * How Proxmox VE turns the VM config into QEMU arguments, as read in
 * proxmox/qemu-server at e6352be (9.2.6, 2026-08-17) and first shipped with
 * SNP in qemu-server 8.3.10 (PVE 8.4):
 *  - `PVE/QemuServer/OVMF.pm` print_ovmf_commandline: an SNP guest gets
 *    `-bios /usr/share/pve-edk2-firmware//OVMF_SEV_4M.fd`, no pflash, no EFI disk;
 *  - `PVE/QemuServer.pm` config_to_command: `-smp N,sockets=S,cores=C,maxcpus=N`,
 *    `-cpu MODEL,enforce,…`, `-m MiB`, then among the devices
 *    `-object sev-snp-guest,id=sev0,cbitpos=C,reduced-phys-bits=R,policy=P[,kernel-hashes=on]`
 *    (CPUConfig.pm get_amd_sev_object), `-machine …,confidential-guest-support=sev0`,
 *    and last of all `args`, split like a shell would (PVE::Tools::split_args,
 *    Text::ParseWords::shellwords) without a shell;
 *  - policy: bit 17 always, bit 16 unless allow-smt=0, bit 19 unless no-debug=1;
 *  - only root@pam, logged in with its password, may set `args` or `amd-sev`
 *    (PVE/API2/Qemu.pm check_vm_modify_config_perm: API tokens, even
 *    root@pam's, are refused with "only root can set 'args' config").
 * QEMU keeps the last `-bios` (system/vl.c puts it into the machine's
 * "firmware" property), so the firmware in `args` replaces Proxmox's.
 * Not run on SNP hardware: no such host is reachable from here.
 */

/** The AmdSevX64 OVMF on the datastore: named by its digest, shared by every SNP relay of a node. */
export const snpFirmwareFileName = (ovmfSha256: string) => `ovmf-amdsev-${ovmfSha256.slice(0, 16)}.img`;
/** A relay's UKI on the datastore: Proxmox VE's upload takes only .iso and .img names for ISO content. */
export const ukiFileName = (isoName: string) => isoName.replace(/\.iso$/, ".efi.img");

export interface SnpLaunchSettings {
  allowSmt: boolean;
  noDebug: boolean;
}

/** The guest policy qemu-server sets for `amd-sev: type=snp` (CPUConfig.pm get_amd_sev_object), as 0x-hex. */
export function qemuServerSnpPolicy(settings: SnpLaunchSettings): string {
  let policy = 1 << 17;
  if (settings.allowSmt) policy |= 1 << 16;
  if (!settings.noDebug) policy |= 1 << 19;
  return `0x${policy.toString(16)}`;
}

/** The provider's amdSev block of an SNP relay: kernel hashes on, so QEMU fills the firmware's table with the UKI's hashes. */
export function snpAmdSev(settings: SnpLaunchSettings) {
  return { type: "snp" as const, noDebug: settings.noDebug, allowSmt: settings.allowSmt, kernelHashes: true as const, noKeySharing: false as const };
}

const SAFE_PATH = /^\/[A-Za-z0-9._/-]+$/;

/** The provider's kvmArguments (Proxmox VE's `args`) of an SNP relay: the firmware and the UKI from the ISO directory. */
export function snpKvmArguments(input: { isoDir: string; firmwareFile: string; ukiFile: string }): string {
  const path = (file: string) => {
    const full = `${input.isoDir.replace(/\/+$/, "")}/${file}`;
    // args is split like a shell would: a path must be one word, with nothing a shell word could mean.
    if (!SAFE_PATH.test(full)) throw new Error(`${full} is not a plain absolute path; it cannot go into the VM's args`);
    return full;
  };
  return `-bios ${path(input.firmwareFile)} -kernel ${path(input.ukiFile)}`;
}
