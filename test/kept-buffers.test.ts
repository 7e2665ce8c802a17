import t from 'tap'
import { closeSync, constants, openSync, writeSync } from 'node:fs'
import { join } from 'node:path'
import { takeBuffer, keepBuffer } from '../lib/kept-buffers'

t.test('a buffer given back is the one taken next, of that size only, and at most two are kept per size', async (t) => {
  const size = 123_457
  const first = takeBuffer(size)
  t.equal(first.length, size)
  keepBuffer(first)
  t.equal(takeBuffer(size + 1).length, size + 1, 'another size: a fresh buffer')
  t.equal(takeBuffer(size), first, 'the same size: the buffer given back')
  t.not(takeBuffer(size), first, 'taken once: not handed out twice')

  const kept = [takeBuffer(size), takeBuffer(size), takeBuffer(size)]
  for (const buffer of kept) keepBuffer(buffer)
  const again = [takeBuffer(size), takeBuffer(size), takeBuffer(size)]
  t.same(again.map((buffer) => kept.includes(buffer)), [true, true, false], 'two kept, the third left to the garbage collector')
})

t.test('a page-aligned buffer is one that direct I/O takes, and is kept apart from ordinary buffers', async (t) => {
  const size = 1024 * 1024
  const aligned = takeBuffer(size, { pageAligned: true })
  t.equal(aligned.length, size)
  const fd = openSync(join(t.testdir(), 'direct'), constants.O_WRONLY | constants.O_CREAT | constants.O_DIRECT)
  try {
    // The kernel refuses (EINVAL) a direct write from a buffer that does not start on a boundary.
    t.equal(writeSync(fd, aligned, 0, size, 0), size, 'written with O_DIRECT')
  } finally {
    closeSync(fd)
  }
  keepBuffer(aligned)
  t.not(takeBuffer(size), aligned, 'not handed out as an ordinary buffer')
  t.equal(takeBuffer(size, { pageAligned: true }), aligned, 'handed out again as a page-aligned one')
})
