/** The `directory` plugin's settings of a component in agent.yaml. */
import { Type, type Static } from '@sinclair/typebox';
import { Argv, StringEnum } from '../../../lib/schema.js';

export const DirectorySettingsSchema = Type.Object(
  {
    /** the data directory, absolute */
    path: Type.String({ minLength: 1 }),
    /** argv run to stop the service before the copy (no shell) */
    stop: Type.Optional(Argv),
    /** argv run to start it again */
    start: Type.Optional(Argv),
    /** argv that exits 0 when the service is healthy; polled after start */
    health: Type.Optional(Argv),
    stopTimeoutMs: Type.Integer({ minimum: 100, default: 60_000 }),
    startTimeoutMs: Type.Integer({ minimum: 100, default: 60_000 }),
    healthTimeoutMs: Type.Integer({ minimum: 100, default: 60_000 }),
    /**
     * copy: reflink or copy every file (safe for any service);
     * hardlink: instant, only safe when the service never changes a file in place
     */
    snapshotMode: StringEnum(['copy', 'hardlink'], { default: 'copy' }),
    /**
     * copy mode with a stop command: copy everything while the service still runs, then
     * stop it and copy again only what changed since (the downtime is one walk plus the
     * changes, not the whole copy)
     */
    precopy: Type.Boolean({ default: true }),
    /**
     * with precopy: keep the snapshot copy in the agent's state dir after its upload; the
     * next pre-copy only copies what changed since (disk: one more copy of the data)
     */
    keepCopy: Type.Boolean({ default: true }),
    /**
     * the files are written anew, not rewritten in place (dumps, archives, an RDB): cut
     * where their content says, so bytes inserted or removed move only the blocks around
     * them (lib/repo/cuts.ts); every changed file is cut whole (~1 ns a byte), where
     * fixed-size blocks of files rewritten in place are found unchanged at their offsets
     */
    cutByContent: Type.Boolean({ default: false }),
    /** the service's config files, reported by topology (not captured yet) */
    configFiles: Type.Optional(Type.Array(Type.String())),
  },
  { additionalProperties: false },
);

export type DirectorySettings = Static<typeof DirectorySettingsSchema>;
