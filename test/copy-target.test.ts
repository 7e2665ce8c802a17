import t from 'tap'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import { CopyTarget } from '../lib/copy-target'
import { takeBuffer } from '../lib/kept-buffers'
import { cachedBytes } from './helpers'

const MiB = 1024 * 1024
const CHUNKS = 8

/**
 * Writes CHUNKS chunks of 1 MiB of `data` from `buffer` into a new file; says whether the target still wrote
 * directly at the end, and how much of the file the page cache holds (before anything reads it).
 */
async function writeChunks (path: string, data: Buffer, buffer: Buffer, direct: boolean): Promise<{ path: string, writesDirectly: boolean, cached: number }> {
  writeFileSync(path, '')
  const target = new CopyTarget(path, { direct })
  let writesDirectly
  try {
    for (let chunk = 0; chunk < CHUNKS; chunk++) {
      data.copy(buffer, 0, chunk * MiB, (chunk + 1) * MiB)
      await target.write(buffer, MiB, chunk * MiB)
    }
    writesDirectly = target.writesDirectly
  } finally {
    target.close()
  }
  return { path, writesDirectly, cached: cachedBytes(path) }
}

t.test('a direct target writes whole chunks from a page-aligned buffer around the page cache', async (t) => {
  const dir = t.testdir()
  const data = randomBytes(CHUNKS * MiB)
  const buffer = takeBuffer(MiB, { pageAligned: true })

  const direct = await writeChunks(join(dir, 'direct'), data, buffer, true)
  t.ok(direct.writesDirectly, 'no write was refused')
  t.ok(direct.cached < MiB, `${direct.cached} bytes of it in the page cache`)
  t.ok(readFileSync(direct.path).equals(data), 'the bytes are the ones written')

  const buffered = await writeChunks(join(dir, 'buffered'), data, buffer, false)
  t.notOk(buffered.writesDirectly)
  t.ok(buffered.cached >= CHUNKS * MiB / 2, `written through the page cache, the file stays in it (${buffered.cached} bytes)`)
  t.ok(readFileSync(buffered.path).equals(data))
})

t.test('a write direct I/O cannot take goes through the page cache, with the same bytes', async (t) => {
  const dir = t.testdir()
  const data = randomBytes(CHUNKS * MiB)

  // The last piece of a database of 512-byte pages need not be a multiple of 4 KiB: that write alone is buffered.
  const path = join(dir, 'tail')
  writeFileSync(path, '')
  const target = new CopyTarget(path, { direct: true })
  const buffer = takeBuffer(MiB, { pageAligned: true })
  data.copy(buffer, 0, 0, MiB)
  await target.write(buffer, MiB, 0)
  data.copy(buffer, 0, MiB, MiB + 3 * 512)
  await target.write(buffer, 3 * 512, MiB)
  t.ok(target.writesDirectly, 'later aligned writes still go around the page cache')
  target.close()
  t.ok(readFileSync(path).equals(data.subarray(0, MiB + 3 * 512)))

  // A buffer off a page boundary is refused by the kernel (EINVAL): this write and the later ones are buffered.
  const unaligned = Buffer.allocUnsafe(MiB + 1).subarray(1)
  const refused = await writeChunks(join(dir, 'unaligned'), data, unaligned, true)
  t.notOk(refused.writesDirectly, 'no longer direct once refused')
  t.ok(readFileSync(refused.path).equals(data), 'every byte written all the same')
})
