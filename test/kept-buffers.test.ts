import t from 'tap'
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
