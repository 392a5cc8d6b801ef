/**
 * A zod refusal in one line, each issue as "path: message", for errors that
 * name what was wrong where (a step's spec, a record, a tool's output). The
 * stack config has its own, richer format (lib/config/config.ts). Pure.
 */
import type { z } from "zod";

export function formatIssues(error: z.ZodError, emptyPath = "(root)"): string {
  return error.issues.map((issue) => `${issue.path.join(".") || emptyPath}: ${issue.message}`).join("; ");
}
