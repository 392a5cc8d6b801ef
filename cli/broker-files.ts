/**
 * Writes the key broker's file set (lib/image/broker-files.ts) where the Go code
 * embeds it: run after changing a file list in lib, then rebuild the broker.
 *   npx tsx cli/broker-files.ts
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { BROKER_FILE_SET_PATH, renderBrokerFileSet } from "../lib/image/broker-files";

const path = join(__dirname, "..", BROKER_FILE_SET_PATH);
writeFileSync(path, renderBrokerFileSet());
console.log(`wrote ${BROKER_FILE_SET_PATH}`);
