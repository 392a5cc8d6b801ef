/**
 * What is published of each relay image build so that anyone can rebuild it
 * and compare (cli/verify-build.ts): the base's record (its inputs, the
 * packages the mirror served, the date inside it) and the public part of the
 * image's recipe. Never a key byte, never a path of the build host.
 *
 * Only an image that holds no secret can be rebuilt by someone else: a
 * broker-mode image attested by SEV-SNP (the agent, its configuration and the
 * broker's CA, all public). An image-mode image carries the relay's keys, and
 * a boot-token image a token made fresh at each build: rebuildRecipe says so
 * instead of pretending.
 * I/O: reads the base record and the built image's files it digests.
 */
import type { BaseRecord } from "./base-record";
import type { RelayRecipe } from "../steps/steps";
import { sha256File } from "../core/digest";

export interface BuildRecord {
  schema: "diskless-relays/build/v1";
  base: BaseRecord;
  recipe: {
    relay: string;
    nickname: string;
    imageDigest: string;
    torrc: string;
    networkEnv: string;
    kernelCmdline: string;
    resolverConf?: string;
    exitNotice?: string;
    hardening?: RelayRecipe["hardening"];
    /** Image mode: the collection key's authorized_keys line (public); the image also carries keys. */
    authorizedKeys?: string;
    broker?: { agentSha256: string; agentConfig: string; caPem?: string; bootToken: boolean };
    secureBootSigned: boolean;
  };
}

export function buildRecordOf(recipe: RelayRecipe, base: BaseRecord): BuildRecord {
  const broker = recipe.broker;
  return {
    schema: "diskless-relays/build/v1",
    base,
    recipe: {
      relay: recipe.relay,
      nickname: recipe.nickname,
      imageDigest: recipe.imageDigest,
      torrc: recipe.torrc,
      networkEnv: recipe.networkEnv,
      kernelCmdline: recipe.kernelCmdline,
      ...(recipe.resolverConf !== undefined ? { resolverConf: recipe.resolverConf } : {}),
      ...(recipe.exitNotice !== undefined ? { exitNotice: recipe.exitNotice } : {}),
      ...(recipe.hardening !== undefined ? { hardening: recipe.hardening } : {}),
      ...(recipe.authorizedKeys !== undefined ? { authorizedKeys: recipe.authorizedKeys } : {}),
      ...(broker
        ? {
            broker: {
              agentSha256: sha256File(broker.agentBinary),
              agentConfig: broker.agentConfig,
              ...(broker.caPem !== undefined ? { caPem: broker.caPem } : {}),
              bootToken: broker.bootToken === true,
            },
          }
        : {}),
      secureBootSigned: recipe.secureBoot !== undefined,
    },
  };
}

/** Why an image cannot be rebuilt from its public record, or undefined when it can. */
export function unrebuildableReason(record: BuildRecord): string | undefined {
  const { recipe } = record;
  if (!recipe.broker) return "it is an image-mode image: it carries the relay's private keys, so only the key host that built it holds its inputs";
  if (recipe.broker.bootToken) return "it carries a single-use boot token made fresh at each build (attestation none): no rebuild can match it by design; SEV-SNP attestation has no token";
  if (recipe.secureBootSigned) return "it is signed for Secure Boot with the operator's key, which a rebuild does not have";
  return undefined;
}

/** The recipe that rebuilds a key-free image from its record, with this machine's base and agent in place of the build host's. */
export function rebuildRecipe(record: BuildRecord, where: { baseDir: string; outDir: string; agentBinary: string }): RelayRecipe {
  const reason = unrebuildableReason(record);
  if (reason) throw new Error(`image ${record.recipe.imageDigest.slice(0, 12)} of relay ${record.recipe.relay} cannot be rebuilt from its record: ${reason}`);
  const { recipe } = record;
  const broker = recipe.broker!;
  return {
    relay: recipe.relay,
    nickname: recipe.nickname,
    imageDigest: recipe.imageDigest,
    baseDir: where.baseDir,
    // A broker-mode build reads no key, state or collected file: these directories stay unread.
    keysDir: where.outDir,
    collectedDir: where.outDir,
    outDir: where.outDir,
    torrc: recipe.torrc,
    networkEnv: recipe.networkEnv,
    kernelCmdline: recipe.kernelCmdline,
    ...(recipe.resolverConf !== undefined ? { resolverConf: recipe.resolverConf } : {}),
    ...(recipe.exitNotice !== undefined ? { exitNotice: recipe.exitNotice } : {}),
    ...(recipe.hardening !== undefined ? { hardening: recipe.hardening } : {}),
    broker: { agentBinary: where.agentBinary, agentConfig: broker.agentConfig, ...(broker.caPem !== undefined ? { caPem: broker.caPem } : {}) },
  };
}
