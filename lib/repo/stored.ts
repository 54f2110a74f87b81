/** Reading a JSON object stored in a repository: bad JSON or a bad shape is corruption, named. */
import type { Static, TSchema } from '@sinclair/typebox';
import { LockstepError } from '../errors.js';
import { checkSchema } from '../config.js';

export function parseJson(text: string, where: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw new LockstepError('LOCKSTEP_E_REPO_CORRUPT', `${where} is not valid JSON`, { cause: err });
  }
}

export function checkStored<S extends TSchema>(schema: S, raw: unknown, where: string, what: string): Static<S> {
  const problems = checkSchema(schema, raw);
  if (problems.length > 0) {
    throw new LockstepError('LOCKSTEP_E_REPO_CORRUPT', `${where} is not a valid ${what}: ${problems[0]!.path} ${problems[0]!.message}`);
  }
  return raw as Static<S>;
}
