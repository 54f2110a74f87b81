/** Reading a JSON object stored in a repository: bad JSON or a bad shape is corruption, named. */
import type { Static, TSchema } from '@sinclair/typebox';
import { Ajv } from 'ajv';
import { LockstepError } from '../errors.js';
import { toDotPath } from '../config.js';

/**
 * What is read from a repository is checked as it is (no defaults filled in) and only its
 * first problem is named: collecting every error of every branch of a union (a chunk is a
 * hash or a pack reference) made a big index's check cost more than parsing it.
 */
const ajv = new Ajv({ allErrors: false, strict: false });

export function parseJson(text: string, where: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw new LockstepError('LOCKSTEP_E_REPO_CORRUPT', `${where} is not valid JSON`, { cause: err });
  }
}

export function checkStored<S extends TSchema>(schema: S, raw: unknown, where: string, what: string): Static<S> {
  const validate = ajv.compile(schema);
  if (!validate(raw)) {
    const e = validate.errors?.[0];
    throw new LockstepError('LOCKSTEP_E_REPO_CORRUPT', `${where} is not a valid ${what}: ${e ? `${toDotPath(e.instancePath)} ${e.message ?? 'is invalid'}` : 'unknown problem'}`);
  }
  return raw as Static<S>;
}

/**
 * Compile the checks of `schemas` now. Ajv compiles a schema (and, the first time, its
 * meta-schema) on first use and keeps it: ~50 ms that an agent otherwise spends in the
 * middle of its first incremental backup, reading the previous manifest.
 */
export function compileStoredChecks(schemas: readonly TSchema[]): void {
  for (const s of schemas) ajv.compile(s);
}
