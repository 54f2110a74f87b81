/**
 * Config files are read in three passes: schema (every problem, with its dot-path),
 * normalise (defaults, paths made absolute against the file's folder), and cross-field
 * rules. All problems of a pass are reported together; nothing starts on a bad config.
 */
import { readFile } from 'node:fs/promises';
import { dirname, isAbsolute, resolve } from 'node:path';
import type { Static, TSchema } from '@sinclair/typebox';
import { Ajv, type ErrorObject } from 'ajv';
import { parseDocument } from 'yaml';
import { LockstepError, errnoCode } from './errors.js';

export interface ConfigProblem {
  path: string;
  message: string;
}

const ajv = new Ajv({ allErrors: true, useDefaults: true, strict: false });

/** `/agents/0/address` → `agents[0].address` */
export function toDotPath(pointer: string): string {
  let out = '';
  for (const part of pointer.split('/').slice(1)) {
    const key = part.replace(/~1/g, '/').replace(/~0/g, '~');
    if (/^\d+$/.test(key)) out += `[${key}]`;
    else out += out === '' ? key : `.${key}`;
  }
  return out === '' ? '(top level)' : out;
}

function describeAjvError(e: ErrorObject): ConfigProblem {
  const base = e.instancePath;
  switch (e.keyword) {
    case 'required':
      return { path: toDotPath(`${base}/${String(e.params.missingProperty)}`), message: 'is required' };
    case 'additionalProperties':
      return {
        path: toDotPath(`${base}/${String(e.params.additionalProperty)}`),
        message: 'is not a known setting (check the spelling)',
      };
    case 'enum':
      return {
        path: toDotPath(base),
        message: `must be one of ${(e.params.allowedValues as unknown[]).map((v) => JSON.stringify(v)).join(', ')}`,
      };
    default:
      return { path: toDotPath(base), message: e.message ?? 'is invalid' };
  }
}

/** Validate `value` against a TypeBox schema; fills defaults in place. */
export function checkSchema<S extends TSchema>(schema: S, value: unknown, prefix = ''): ConfigProblem[] {
  const validate = ajv.compile(schema);
  if (validate(value)) return [];
  const seen = new Set<string>();
  const problems: ConfigProblem[] = [];
  for (const e of validate.errors ?? []) {
    // anyOf/oneOf repeat their branches' errors; keep one line per path and message
    if (e.keyword === 'anyOf' || e.keyword === 'oneOf') continue;
    const p = describeAjvError(e);
    const path = prefix ? joinPath(prefix, p.path) : p.path;
    const key = `${path}\u0000${p.message}`;
    if (!seen.has(key)) {
      seen.add(key);
      problems.push({ path, message: p.message });
    }
  }
  return problems;
}

export function joinPath(prefix: string, path: string): string {
  if (path === '(top level)') return prefix;
  return path.startsWith('[') ? `${prefix}${path}` : `${prefix}.${path}`;
}

export function configError(file: string, problems: ConfigProblem[]): LockstepError {
  const lines = problems.map((p) => `  ${p.path}: ${p.message}`).join('\n');
  return new LockstepError('LOCKSTEP_E_CONFIG_INVALID', `${file} has ${problems.length} problem(s):\n${lines}`, {
    details: { file, problems },
  });
}

/** Read and parse a YAML (or JSON) file; syntax errors name the line. */
export async function readYamlFile(file: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    const why = errnoCode(err) === 'ENOENT' ? 'does not exist' : `cannot be read (${errnoCode(err) ?? String(err)})`;
    throw new LockstepError('LOCKSTEP_E_CONFIG_UNREADABLE', `config file ${file} ${why}`, { cause: err });
  }
  const doc = parseDocument(text, { prettyErrors: true });
  if (doc.errors.length > 0) {
    const problems = doc.errors.map((e) => ({
      path: e.linePos ? `line ${e.linePos[0].line}, column ${e.linePos[0].col}` : '(syntax)',
      message: e.message.split('\n')[0] ?? e.message,
    }));
    throw configError(file, problems);
  }
  return doc.toJS() ?? {};
}

/** Run the three passes over one file. */
export async function loadConfig<S extends TSchema, N>(
  file: string,
  schema: S,
  normalise: (raw: Static<S>, baseDir: string) => N,
  rules: (cfg: N) => ConfigProblem[] | Promise<ConfigProblem[]>,
): Promise<N> {
  const abs = resolve(file);
  const raw = await readYamlFile(abs);
  const problems = checkSchema(schema, raw);
  if (problems.length > 0) throw configError(file, problems);
  const cfg = normalise(raw as Static<S>, dirname(abs));
  const ruleProblems = await rules(cfg);
  if (ruleProblems.length > 0) throw configError(file, ruleProblems);
  return cfg;
}

export function resolvePath(baseDir: string, p: string): string {
  return isAbsolute(p) ? p : resolve(baseDir, p);
}

/** `host:port` with a port in range; IPv6 in brackets. */
export function parseAddress(address: string): { host: string; port: number } | undefined {
  const m = /^(\[[0-9a-fA-F:.]+\]|[^:\s]+):(\d{1,5})$/.exec(address);
  if (!m) return undefined;
  const port = Number(m[2]);
  if (port < 1 || port > 65535) return undefined;
  return { host: m[1]!.replace(/^\[|\]$/g, ''), port };
}
