import t from 'tap'
import fs from 'node:fs'
import { open } from 'node:fs/promises'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'

// The built module, whose calls go through the `fs` object at call time, so that the sizes of the writes it makes
// can be seen from here.
const { writeAllSync, writeAll, WRITE_PIECE_BYTES } = require('../dist/file-writes') as typeof import('../lib/file-writes')

// Over three pieces, not a multiple of one, at an offset that is not one either.
const LENGTH = 3 * WRITE_PIECE_BYTES + 12_345
const POSITION = 4096 + 7

function expectedFile (data: Buffer): Buffer {
  return Buffer.concat([Buffer.alloc(POSITION), data.subarray(0, LENGTH)])
}

t.test('writeAllSync writes the bytes at their place, in pieces no larger than WRITE_PIECE_BYTES', async (t) => {
  const path = join(t.testdir(), 'out')
  const data = randomBytes(LENGTH + 100)
  const sizes: number[] = []
  const writeSync = fs.writeSync
  fs.writeSync = ((fd: number, buffer: Buffer, offset: number, length: number, position: number) => {
    sizes.push(length)
    return writeSync(fd, buffer, offset, length, position)
  }) as typeof fs.writeSync
  t.teardown(() => { fs.writeSync = writeSync })
  const fd = fs.openSync(path, 'w')
  try {
    writeAllSync(fd, data, LENGTH, POSITION)
  } finally {
    fs.closeSync(fd)
  }
  t.same(sizes, [WRITE_PIECE_BYTES, WRITE_PIECE_BYTES, WRITE_PIECE_BYTES, 12_345])
  t.ok(fs.readFileSync(path).equals(expectedFile(data)), 'the file holds exactly the bytes given, at their position')
})

t.test('writeAll does the same through a FileHandle', async (t) => {
  const path = join(t.testdir(), 'out')
  const data = randomBytes(LENGTH + 100)
  const file = await open(path, 'w')
  const sizes: number[] = []
  const write = file.write.bind(file)
  file.write = (async (buffer: Buffer, offset: number, length: number, position: number) => {
    sizes.push(length)
    return await write(buffer, offset, length, position)
  }) as typeof file.write
  try {
    await writeAll(file, data, LENGTH, POSITION)
  } finally {
    await file.close()
  }
  t.same(sizes, [WRITE_PIECE_BYTES, WRITE_PIECE_BYTES, WRITE_PIECE_BYTES, 12_345])
  t.ok(fs.readFileSync(path).equals(expectedFile(data)), 'the file holds exactly the bytes given, at their position')
})
