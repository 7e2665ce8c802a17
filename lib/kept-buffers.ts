// Large buffers used for every backup (the 1 MiB chunks of a copy, of a WAL scan, of a hash) are kept for the
// thread's next use. A fresh one costs a page fault per 4 KiB the first time it is written: 5 ms per MiB measured
// on a VM, a third of a 1 MB database's whole snapshot.

const KEPT_PER_SIZE = 2
// WebAssembly memory grows in pages of 64 KiB.
const WASM_PAGE_BYTES = 64 * 1024

// The one part of WebAssembly used here (the compiler's libraries for Node do not declare it).
declare const WebAssembly: { Memory: new (descriptor: { initial: number }) => { buffer: ArrayBuffer } }

const kept = new Map<string, Buffer[]>()
/** The memory of the page-aligned buffers handed out, so that each is kept with its kind. */
const pageAligned = new WeakSet<ArrayBufferLike>()

export interface BufferKind {
  /**
   * Starts on a memory page boundary, as direct I/O needs (copy-target.ts). Such a buffer is the start of a
   * WebAssembly memory, which V8 maps on its own pages; where that cannot be had (a limit on address space), an
   * ordinary buffer is returned, and direct writes from it are refused, then made through the page cache.
   */
  pageAligned?: boolean
}

/** A buffer of `size` bytes, kept from an earlier use when there is one; its contents are not cleared. */
export function takeBuffer (size: number, { pageAligned: aligned = false }: BufferKind = {}): Buffer {
  return kept.get(keyOf(size, aligned))?.pop() ?? (aligned ? allocatePageAligned(size) : Buffer.allocUnsafe(size))
}

/** Gives `buffer` back for a later takeBuffer(); the caller must hold no reference to it afterwards. */
export function keepBuffer (buffer: Buffer): void {
  const key = keyOf(buffer.length, pageAligned.has(buffer.buffer))
  const list = kept.get(key)
  if (list === undefined) kept.set(key, [buffer])
  else if (list.length < KEPT_PER_SIZE) list.push(buffer)
}

function keyOf (size: number, aligned: boolean): string {
  return aligned ? `${size} aligned` : String(size)
}

function allocatePageAligned (size: number): Buffer {
  let memory
  try {
    memory = new WebAssembly.Memory({ initial: Math.ceil(size / WASM_PAGE_BYTES) })
  } catch {
    return Buffer.allocUnsafe(size)
  }
  pageAligned.add(memory.buffer)
  return Buffer.from(memory.buffer, 0, size)
}
