/**
 * Page-aligned buffers for reading files.
 *
 * A read from the page cache is a kernel copy into the caller's buffer, and that copy is
 * several times slower when the buffer is not aligned: on the 2-core AMD EPYC machines
 * lockstep is measured on, reading 1 GiB of cached file in 1 MiB reads took 600–680 ms
 * into a `Buffer.allocUnsafe` buffer (malloc puts large blocks 16 bytes past a page) and
 * 140 ms into a page-aligned one, the same as `dd`. Writes showed no difference.
 *
 * Node has no aligned allocation, but a WebAssembly memory is mapped whole, page-aligned:
 * a pool's buffers are views at 64 KiB steps of one such memory. Its pages, like malloc's,
 * are resident only once touched, and it is unmapped when the last view is collected.
 * Where a memory cannot be made (an address-space limit: each reserves several GiB of
 * address space, not memory), plain buffers are used and reads are only slower.
 *
 * The same buffers can be written with O_DIRECT (lib/direct-io.ts), which wants the
 * buffer, the file offset and the length on `DIRECT_ALIGN` boundaries: `paddedView` tells
 * whether a buffer is one of these (or starts on such a boundary inside one) and gives
 * the view to write, its length rounded up from the memory's own bytes.
 */

const WASM_PAGE = 64 * 1024;
/** the alignment O_DIRECT asks of buffer, offset and length on every disk lockstep meets (4 KiB sectors or 512-byte ones) */
export const DIRECT_ALIGN = 4096;
/** memories made here: their first byte is on a page boundary */
const alignedMemories = new WeakSet<ArrayBuffer>();

// Node has WebAssembly; this project's type libraries (no DOM) do not declare it
declare const WebAssembly: { Memory: new (descriptor: { initial: number; maximum: number }) => { buffer: ArrayBuffer } };

/** `count` buffers of `size` bytes, each starting on a 64 KiB boundary */
export function alignedBuffers(size: number, count: number): Buffer[] {
  const step = Math.ceil(size / WASM_PAGE) * WASM_PAGE;
  let memory: ArrayBuffer | undefined;
  try {
    const pages = (step * count) / WASM_PAGE;
    memory = new WebAssembly.Memory({ initial: pages, maximum: pages }).buffer;
    alignedMemories.add(memory);
  } catch {
    memory = undefined;
  }
  const out: Buffer[] = [];
  for (let i = 0; i < count; i++) out.push(memory ? Buffer.from(memory, i * step, size) : Buffer.allocUnsafeSlow(size));
  return out;
}

/** one page-aligned buffer of `size` bytes */
export function alignedBuffer(size: number): Buffer {
  return alignedBuffers(size, 1)[0]!;
}

/** `n` rounded up to a whole number of `DIRECT_ALIGN` */
export const roundUpDirect = (n: number): number => Math.ceil(n / DIRECT_ALIGN) * DIRECT_ALIGN;

/**
 * `buf` widened to a whole number of `DIRECT_ALIGN` bytes, when it starts on such a boundary
 * of an aligned memory that has those bytes (what follows it there is written too, and cut
 * off by the caller); else undefined.
 */
export function paddedView(buf: Buffer): Buffer | undefined {
  const memory = buf.buffer;
  if (!(memory instanceof ArrayBuffer) || !alignedMemories.has(memory) || buf.byteOffset % DIRECT_ALIGN !== 0) return undefined;
  const length = roundUpDirect(buf.length);
  return buf.byteOffset + length <= memory.byteLength ? Buffer.from(memory, buf.byteOffset, length) : undefined;
}
