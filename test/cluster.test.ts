import t from 'tap'
import { fork, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { createDatabase, startPairWriter, integrityCheck, waitFor, sha256File, highestPair, watchSnapshots } from './helpers'

interface Message { type: string, pid?: number, id?: string, request?: number, skipped?: boolean, error?: string }

t.test('several processes, one database and one destination: one scheduler, one snapshot at a time', async (t) => {
  const dir = t.testdir()
  const database = join(dir, 'app.db')
  const destination = join(dir, 'backups')
  createDatabase(database, { rows: 500 }).close()
  await startPairWriter(t, database)

  const published: Message[] = []
  const results = new Map<number, Message>()
  const apps: ChildProcess[] = []
  for (let i = 0; i < 3; i++) {
    const child = fork(join(__dirname, 'fixtures', 'cluster-app.js'), [database, destination, '250'], { stdio: 'inherit' })
    t.teardown(() => { child.kill('SIGKILL') })
    child.on('message', (message: Message) => {
      if (message.type === 'published') published.push(message)
      if (message.type === 'result') results.set(message.request!, message)
    })
    const [ready] = await once(child, 'message') as [Message]
    t.equal(ready.type, 'ready')
    apps.push(child)
  }

  // Never two snapshots at once, across all processes.
  const snapshots = watchSnapshots(t, destination)

  await waitFor(() => published.length >= 4, 30_000)
  const leader = published[0].pid
  t.same(new Set(published.map((message) => message.pid)), new Set([leader]), 'every scheduled backup comes from one process')

  // The leader dies without a chance to clean up: another process takes the schedule over.
  const leaderProcess = apps.find((child) => child.pid === leader)!
  leaderProcess.kill('SIGKILL')
  await once(leaderProcess, 'exit')
  const before = published.length
  await waitFor(() => published.length >= before + 3, 30_000)
  const successors = new Set(published.slice(before).map((message) => message.pid))
  t.equal(successors.size, 1, 'one successor runs the schedule')
  t.not([...successors][0], leader)

  // now() works from every surviving process, even the one that does not run the schedule, and concurrently.
  const survivors = apps.filter((child) => child !== leaderProcess)
  const committedBefore = highestPair(database)
  survivors.forEach((child, request) => child.send({ type: 'now', request }))
  await waitFor(() => results.size === survivors.length, 30_000)
  for (const result of results.values()) {
    t.notOk(result.error, `now() from another process: ${result.error ?? 'ok'}`)
    t.ok(highestPair(join(destination, `${result.id!}.sqlite`)) >= committedBefore, 'holds the commits made before the call')
  }
  await snapshots.stop()

  for (const child of survivors) {
    child.kill('SIGTERM')
    await once(child, 'exit')
  }
  // Every published backup is complete and recorded; no id was written twice, no temp file of a live process left.
  const files = readdirSync(destination)
  const backups = files.filter((name) => name.endsWith('.sqlite'))
  t.equal(new Set(published.map((message) => message.id)).size, published.length, 'no duplicate ids')
  for (const name of backups) {
    const id = name.slice(0, -'.sqlite'.length)
    const record = JSON.parse(readFileSync(join(destination, `${id}.json`), 'utf8'))
    t.equal(sha256File(join(destination, name)), record.sha256, `${id}: matches its record`)
    t.equal(integrityCheck(join(destination, name)), 'ok')
  }
  t.same(files.filter((name) => name.startsWith('.tmp-') && !name.includes(`-${leader}-`)), [], 'no leftovers but the killed process\'s')
})
