/** Schema helpers shared by configs and wire types. */
import { Type, type TUnsafe } from '@sinclair/typebox';

/** A command line: program and arguments, never through a shell. */
export const Argv = Type.Array(Type.String({ minLength: 1 }), { minItems: 1 });

/** A string that must be one of `values`: one `enum` keyword, so a bad value gets one clear message. */
export function StringEnum<const T extends readonly string[]>(values: T, opts: { default?: T[number] } = {}): TUnsafe<T[number]> {
  return Type.Unsafe<T[number]>({ type: 'string', enum: [...values], ...opts });
}
