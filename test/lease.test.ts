import t, { type Test } from 'tap'
import { fork, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { Lease } from '../lib/lease'

interface Reply { ready?: boolean, held?: boolean }

/** Another process with a Lease on `path` (test/fixtures/lease-holder.ts), killed when the test ends. */
async function otherProcess (t: Test, path: string): Promise<{ child: ChildProcess, ask: (command: string) => Promise<Reply>, reply: () => Promise<Reply> }> {
  // fork() passes this process's loader options on, so the fixture runs from the TypeScript source like this test.
  const child = fork(join(__dirname, 'fixtures', 'lease-holder.ts'), [path], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  t.teardown(() => { child.kill('SIGKILL') })
  const reply = async (): Promise<Reply> => (await once(child, 'message'))[0] as Reply
  t.same(await reply(), { ready: true })
  return {
    child,
    reply,
    ask: async (command) => {
      child.send(command)
      return await reply()
    }
  }
}

function lease (t: Test, path: string): Lease {
  const created = new Lease(path)
  t.teardown(() => created.release())
  return created
}

t.test('tryAcquire takes a free lease and keeps it until release', async (t) => {
  const path = join(t.testdir(), '.run.lock')
  const mine = lease(t, path)
  t.equal(mine.held, false, 'not held before')
  t.equal(mine.tryAcquire(), true)
  t.equal(mine.held, true)
  t.ok(existsSync(path), 'the lock file is created')
  t.equal(mine.tryAcquire(), true, 'asking again while holding it answers true')
  mine.release()
  t.equal(mine.held, false)
  mine.release()
  t.equal(mine.held, false, 'releasing twice is harmless')
  t.equal(mine.tryAcquire(), true, 'taken again after release')
})

t.test('two Lease objects in one process exclude each other, and a failed try does not drop the holder\'s lock', async (t) => {
  const path = join(t.testdir(), '.run.lock')
  const first = lease(t, path)
  const second = lease(t, path)
  t.equal(first.tryAcquire(), true)
  // SQLite's unix VFS shares one lock state per file across the connections of a process, so the second
  // connection sees the first one's lock even though POSIX locks never conflict within one process.
  t.equal(second.tryAcquire(), false, 'the second one is refused')
  t.equal(second.held, false)
  t.equal(second.tryAcquire(), false, 'and refused again')

  // Closing a file drops every POSIX lock the process holds on it; the refused connections were closed, and the
  // lock must still hold for other processes.
  const other = await otherProcess(t, path)
  t.same(await other.ask('try'), { held: false }, 'another process is still refused')

  first.release()
  t.equal(second.tryAcquire(), true, 'the second one takes it once the first releases it')
  t.same(await other.ask('try'), { held: false }, 'and holds it against other processes')
  second.release()
  t.same(await other.ask('try'), { held: true }, 'released: another process takes it')
})

t.test('a lease held by another process: refused until that process is killed', async (t) => {
  const path = join(t.testdir(), '.run.lock')
  const other = await otherProcess(t, path)
  t.same(await other.ask('try'), { held: true }, 'the other process holds it')
  const mine = lease(t, path)
  for (let i = 0; i < 3; i++) t.equal(mine.tryAcquire(), false, `refused (try ${i + 1})`)
  t.equal(mine.held, false)

  // SIGKILL: no release, no exit handler. The kernel drops the lock with the process.
  other.child.kill('SIGKILL')
  await once(other.child, 'exit')
  t.equal(mine.tryAcquire(), true, 'free once the holder is dead')
})

t.test('acquire waits for the holder to release, in another process and back', async (t) => {
  const path = join(t.testdir(), '.run.lock')
  const other = await otherProcess(t, path)
  t.same(await other.ask('try'), { held: true })
  const mine = lease(t, path)

  let acquired = false
  const waiting = mine.acquire(new AbortController().signal, 10).then(() => { acquired = true })
  await sleep(200)
  t.equal(acquired, false, 'still waiting while the other process holds it')
  t.same(await other.ask('release'), { held: false })
  await waiting
  t.equal(mine.held, true, 'taken once released')

  // The other way round: the other process waits, and gets it when this one releases.
  other.child.send('acquire')
  const replied = other.reply()
  let otherAcquired = false
  replied.then(() => { otherAcquired = true }, () => {})
  await sleep(200)
  t.equal(otherAcquired, false, 'the other process waits while this one holds it')
  mine.release()
  t.same(await replied, { held: true }, 'the other process takes it after release()')
  t.equal(mine.tryAcquire(), false)
})

/**
 * What acquire() rejects with once its signal aborts. Its doc comment says "the signal's reason"; what it rejects
 * with today is the AbortError of timers/promises, with the reason as its cause. Either is accepted here.
 */
async function abortedWith (t: Test, waiting: Promise<void>): Promise<unknown> {
  try {
    await waiting
  } catch (err) {
    return err instanceof Error && (err as Error & { code?: string }).code === 'ABORT_ERR' ? err.cause : err
  }
  t.fail('acquire() resolved although its signal aborted')
  return undefined
}

t.test('acquire rejects with the signal\'s reason when it aborts', async (t) => {
  const path = join(t.testdir(), '.run.lock')
  const holder = lease(t, path)
  t.equal(holder.tryAcquire(), true)
  const mine = lease(t, path)

  const controller = new AbortController()
  const waiting = mine.acquire(controller.signal, 10)
  await sleep(50)
  const reason = new Error('closing')
  controller.abort(reason)
  t.equal(await abortedWith(t, waiting), reason, 'rejects with the reason')
  t.equal(mine.held, false, 'not held after the abort')

  t.equal(await abortedWith(t, mine.acquire(AbortSignal.abort(reason), 10)), reason, 'an aborted signal rejects at once while the lease is busy')

  holder.release()
  t.equal(mine.tryAcquire(), true, 'the aborted waiter left nothing behind: the lease can be taken')
})

t.test('a lock file that is not a database is an error, not a busy lease', async (t) => {
  const dir = t.testdir({ '.run.lock': 'x'.repeat(4096) })
  const mine = lease(t, join(dir, '.run.lock'))
  t.throws(() => mine.tryAcquire(), { code: 'SQLITE_NOTADB' })
  t.equal(mine.held, false)
})
