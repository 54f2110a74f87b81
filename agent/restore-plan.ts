/**
 * For `restore --dry-run`: what staging would download and what it would likely reuse,
 * judged by size and modification time only (staging itself checks every hash).
 */
import { join } from 'node:path';
import type { RestorePlanRequest, RestorePlanResult } from '../lib/wire.js';
import type { AgentNode } from './node.js';
import { lstatIfAny } from '../lib/tree.js';
import type { IndexEntry } from '../lib/repo/index-file.js';

export async function restorePlan(node: AgentNode, req: RestorePlanRequest): Promise<RestorePlanResult> {
  const { config, plugin } = node.component(req.component);
  const repo = await node.repositoryFor(req.repositoryId);
  const targets = plugin.node.paths(config);
  const out: RestorePlanResult = { files: 0, bytes: 0, likelyReusedFiles: 0, likelyReusedBytes: 0, downloadFiles: 0, downloadBytes: 0 };
  // part by part: never the whole index at once
  await repo.readIndexParts(req.indexKey, req.indexSha256, (entries) => {
    for (const e of entries) look(e);
  });
  return out;

  function look(e: IndexEntry): void {
    if (e.type !== 'file') return;
    const slash = e.path.indexOf('/');
    const live = targets[e.path.slice(0, slash)];
    if (!live) return; // a set this component does not restore
    out.files++;
    out.bytes += e.size;
    const st = lstatIfAny(join(live, e.path.slice(slash + 1)));
    if (st?.isFile() && st.size === e.size && Math.floor(st.mtimeMs) === Math.floor(e.mtimeMs)) {
      out.likelyReusedFiles++;
      out.likelyReusedBytes += e.size;
    } else {
      out.downloadFiles++;
      out.downloadBytes += e.size;
    }
  }
}
