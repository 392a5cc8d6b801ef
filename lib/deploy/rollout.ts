/**
 * Rolling order: relays on one Proxmox node are replaced maxParallel at a
 * time, in a fixed order (by vmId), so a node never takes all its exits down
 * at once. Relays on different nodes roll independently.
 * Pure.
 */
export function rollingOrder<T extends { config: { name: string; node: string; vmId: number } }>(
  relays: T[],
  maxParallel: number,
): { planned: T; after: string[] }[] {
  const byNode = new Map<string, T[]>();
  for (const relay of [...relays].sort((a, b) => a.config.vmId - b.config.vmId)) {
    byNode.set(relay.config.node, [...(byNode.get(relay.config.node) ?? []), relay]);
  }
  const order: { planned: T; after: string[] }[] = [];
  for (const group of byNode.values()) {
    group.forEach((planned, index) => {
      // Wave n waits for wave n-1: the relay maxParallel places earlier.
      const before = group[index - maxParallel];
      order.push({ planned, after: before ? [before.config.name] : [] });
    });
  }
  return order;
}
