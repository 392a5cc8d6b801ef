/**
 * QEMU arguments for a relay VM laid out as on Proxmox VE: q35, OVMF, no
 * disk, the relay ISO as an IDE CD-ROM on ide2, a virtio NIC with the
 * relay's MAC, the serial console to a file. The NIC is a tap device on the
 * testnet's bridge (as a Proxmox VM's is on vmbr0), or, for a lone image
 * test, QEMU's user-mode network with forwarded ports. With a simulated
 * SEV-SNP secure processor (lib/local/local-snp.ts), a virtio-serial port named
 * org.diskless-relays.snp carries the guest agent's report requests to it.
 * A virtio RNG as Proxmox VE's rng0 makes it (lib/render/vm-rng.ts).
 *
 * An SEV-SNP relay boots as Proxmox VE launches it (lib/proxmox/proxmox-snp.ts):
 * the firmware as -bios, the UKI as -kernel, `-smp N,sockets=1,cores=N,maxcpus=N`
 * and its vCPU model; minus the SNP hardware (no sev-snp-guest object) and
 * with a firmware this machine can run in its place (LOCAL_SNP_FIRMWARE:
 * Debian's OVMF; the pinned AmdSevX64 build needs an SEV host). Pure.
 */

import { RELAY_RNG, type RelayRng } from "../render/vm-rng";

/** The virtio-serial port the guest's relay-agent reads reports from (/dev/virtio-ports/NAME). */
export const SNP_SERIAL_PORT = "org.diskless-relays.snp";

const OVMF_CODE = "/usr/share/OVMF/OVMF_CODE_4M.fd";
export const OVMF_VARS = "/usr/share/OVMF/OVMF_VARS_4M.fd";
/** What an SNP-flavoured local VM boots as -bios in place of the AmdSevX64 OVMF it is measured with (Debian's ovmf package). */
export const LOCAL_SNP_FIRMWARE = "/usr/share/ovmf/OVMF.fd";

export interface QemuRelayMachine {
  iso: string;
  /** A private copy of OVMF_VARS (the firmware writes to it). */
  varsFile: string;
  memoryMiB: number;
  cores: number;
  mac: string;
  network:
    | { kind: "tap"; ifname: string }
    /** host port on 127.0.0.1 → guest port on the relay's own (static) address. */
    | { kind: "user"; hostForwards: { host: number; guest: number }[]; guestAddress?: string };
  serialLog: string;
  pidFile?: string;
  /** A QMP/HMP monitor socket, for operators and fault tests (e.g. hostfwd_remove). */
  monitorSocket?: string;
  /** KVM where it works; TCG (software) otherwise. */
  accel?: "kvm" | "tcg";
  /** The simulated secure processor's unix socket (listening already); QEMU connects to it as a client. */
  snpReportSocket?: string;
  /** An SNP relay's measured direct boot, as Proxmox VE launches it: the firmware as -bios, the UKI as -kernel, the vCPU model. */
  directBoot?: { firmware: string; kernel: string; cpuModel: string };
}

/**
 * How long a relay VM gets to power off on the ACPI power button before it is
 * stopped hard, on either target: relay-shutdown gives tor 15 s to exit (10 s
 * after SIGTERM, 5 after SIGKILL) and the agent's last push 35 s.
 */
export const CLEAN_SHUTDOWN_SECONDS = 60;

/** QEMU splits option values at commas; a literal comma in a path is written twice. */
const qemuPath = (path: string) => path.replaceAll(",", ",,");

/** QEMU's -object and -device for a relay's RNG, with qemu-server's defaults for what rng0 leaves out. */
function qemuRngArgs(rng: RelayRng): string[] {
  return ["-object", `rng-random,filename=${rng.source},id=rng0`, "-device", `virtio-rng-pci,rng=rng0,max-bytes=${rng.maxBytes},period=${rng.period}`];
}

export function qemuRelayArgs(machine: QemuRelayMachine): string[] {
  const { network } = machine;
  const netdev =
    network.kind === "tap"
      ? `tap,id=net0,ifname=${network.ifname},script=no,downscript=no`
      : // restrict=on: the relay reaches nothing but the forwarded ports.
        `user,id=net0,restrict=on${network.hostForwards.map((f) => `,hostfwd=tcp:127.0.0.1:${f.host}-${network.guestAddress ?? ""}:${f.guest}`).join("")}`;
  const direct = machine.directBoot;
  return [
    "-machine", "q35",
    "-accel", machine.accel ?? "tcg",
    "-m", String(machine.memoryMiB),
    ...(direct
      ? [
          // qemu-server's form (config_to_command), the measured vCPU count and model.
          "-smp", `${machine.cores},sockets=1,cores=${machine.cores},maxcpus=${machine.cores}`,
          "-cpu", direct.cpuModel,
          "-bios", qemuPath(direct.firmware),
          "-kernel", qemuPath(direct.kernel),
        ]
      : [
          "-smp", String(machine.cores),
          "-drive", `if=pflash,format=raw,readonly=on,file=${qemuPath(OVMF_CODE)}`,
          "-drive", `if=pflash,format=raw,file=${qemuPath(machine.varsFile)}`,
        ]),
    // ide.1 unit 0 is what Proxmox calls ide2.
    "-drive", `file=${qemuPath(machine.iso)},media=cdrom,if=none,id=cd0,readonly=on`,
    "-device", "ide-cd,drive=cd0,bus=ide.1,unit=0",
    "-netdev", netdev,
    "-device", `virtio-net-pci,netdev=net0,mac=${machine.mac.toLowerCase()}`,
    // After the NIC, so the NIC keeps its PCI slot. A client chardev (the simulator listens); reconnect=1
    // (QEMU 7.2; later QEMUs deprecate it for reconnect-ms) retries each second should the simulator go away.
    ...(machine.snpReportSocket
      ? [
          "-chardev", `socket,id=snp,path=${qemuPath(machine.snpReportSocket)},reconnect=1`,
          "-device", "virtio-serial-pci,id=vser0",
          "-device", `virtserialport,bus=vser0.0,chardev=snp,name=${SNP_SERIAL_PORT}`,
        ]
      : []),
    // A virtio RNG fed from the host's /dev/urandom (the image loads virtio_rng), as Proxmox VE's rng0
    // makes it (lib/render/vm-rng.ts): last, so the devices before it keep their PCI slots.
    ...qemuRngArgs(RELAY_RNG),
    "-serial", `file:${qemuPath(machine.serialLog)}`,
    "-display", "none",
    "-monitor", machine.monitorSocket ? `unix:${qemuPath(machine.monitorSocket)},server,nowait` : "none",
    // No -no-reboot: a guest that reboots or panics (panic=10) starts again, as a Proxmox VE VM does, and the
    // monitor's system_reset reboots it (with -no-reboot QEMU would exit instead).
    ...(machine.pidFile ? ["-pidfile", machine.pidFile, "-daemonize"] : []),
  ];
}
