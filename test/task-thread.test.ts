import t from 'tap'
import { statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { createDatabase } from './helpers'

// The threads run the built code (dist/worker/entry.js), so this test loads it too.
const { TaskThread } = require('../dist/worker/task-thread') as typeof import('../lib/worker/task-thread')

const options = { timeout: 60_000, signal: new AbortController().signal }
// Long enough for a copy of a small file to start many times over, short enough to fail quickly.
const BLOCKED_MS = 10_000

t.test('a task for an idle thread is sent before run() returns: it runs while the caller blocks its own thread', async (t) => {
  const dir = t.testdir()
  const database = join(dir, 'app.db')
  createDatabase(database, { journalMode: 'delete', rows: 500 }).close()
  const thread = new TaskThread()
  t.teardown(() => thread.close())
  // Started and idle, as the helper of a large snapshot is from its second use on.
  writeFileSync(join(dir, 'warm.db'), '')
  await thread.run('copy', { from: database, tempPath: join(dir, 'warm.db'), expected: null }, options)

  const tempPath = join(dir, 'copy.db')
  writeFileSync(tempPath, '')
  const copied = thread.run<{ bytes: number }>('copy', { from: database, tempPath, expected: null }, options)
  // Blocks this thread the way a synchronous quick_check does (check-beside-copy.ts), until the task has written.
  const until = Date.now() + BLOCKED_MS
  while (statSync(tempPath).size === 0 && Date.now() < until);
  t.ok(statSync(tempPath).size > 0, 'the task wrote while this thread was blocked')
  t.equal((await copied).bytes, statSync(database).size)
})

t.test('tasks still run one at a time, in the order given', async (t) => {
  const dir = t.testdir()
  // The first copy is the longest: run side by side, the others would finish before it.
  createDatabase(join(dir, 'large.db'), { journalMode: 'delete', rows: 20_000 }).close()
  createDatabase(join(dir, 'small.db'), { journalMode: 'delete', rows: 10 }).close()
  const thread = new TaskThread()
  t.teardown(() => thread.close())
  const finished: string[] = []
  const runs = ['a', 'b', 'c'].map(async (name) => {
    writeFileSync(join(dir, `${name}.db`), '')
    const from = join(dir, name === 'a' ? 'large.db' : 'small.db')
    await thread.run('copy', { from, tempPath: join(dir, `${name}.db`), expected: null }, options)
    finished.push(name)
  })
  await Promise.all(runs)
  t.same(finished, ['a', 'b', 'c'])
})
