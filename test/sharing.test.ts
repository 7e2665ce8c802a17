import t, { type Test } from 'tap'
import Fastify, { type FastifyInstance } from 'fastify'
import { existsSync, readdirSync, mkdirSync, writeFileSync, copyFileSync, renameSync } from 'node:fs'
import { join } from 'node:path'
import backup, { type FastifySqliteBackupOptions } from 'fastify-sqlite-backup'
import { Lease } from '../lib/lease'
import { leaseScope } from '../lib/leases'
import { timeOfId, newBackupId } from '../lib/backup-id'
import { createDatabase, waitFor, logCapture, type LogLine } from './helpers'

/** An app whose log lines (JSON, from `info` on) are collected in `lines`. */
async function loggedApp (t: Test, options: FastifySqliteBackupOptions): Promise<{ app: FastifyInstance, lines: LogLine[] }> {
  const { stream, lines } = logCapture()
  const app = Fastify({ logger: { level: 'info', stream } })
  t.teardown(() => app.close())
  await app.register(backup, options)
  await app.ready()
  return { app, lines }
}

t.test('processes sharing a database and its destination: status() and the log say which one runs the schedule', async (t) => {
  const dir = t.testdir()
  const db = createDatabase(join(dir, 'app.db'))
  t.teardown(() => db.close())
  const options = { database: db, destination: join(dir, 'backups'), interval: 200 }
  // Each app has its own lease connection, so within one process they compete for the lease as processes do.
  const leader = await loggedApp(t, options)
  const follower = await loggedApp(t, options)
  t.equal(leader.app.backup.status().scheduledBy, 'this-process')
  t.equal(follower.app.backup.status().scheduledBy, 'another-process', 'known as soon as the app is ready')
  t.equal(follower.app.backup.status().nextRunAt, null, 'no scheduled backup is promised by the process that will not run it')
  t.ok(leader.app.backup.status().nextRunAt instanceof Date)
  await waitFor(() => leader.app.backup.status().published >= 1)
  // Several ticks of the follower later, it has said so once, at info, and still backs up on demand.
  await new Promise((resolve) => setTimeout(resolve, 700))
  const said = follower.lines.filter((line) => /another process runs the backup schedule/.test(line.msg))
  t.equal(said.length, 1, 'said once at info, not at every tick')
  t.equal((await follower.app.backup.now({ force: true })).skipped, false, 'now() works in the follower')

  // The leader closes: the follower takes the schedule over, and says so.
  await leader.app.close()
  await waitFor(() => follower.app.backup.status().scheduledBy === 'this-process')
  t.ok(follower.lines.some((line) => /this process runs the backup schedule/.test(line.msg)))
  t.ok(follower.app.backup.status().nextRunAt instanceof Date)
})

t.test('runOnStart without a schedule runs once and lets go of the schedule', async (t) => {
  const dir = t.testdir()
  const db = createDatabase(join(dir, 'app.db'))
  t.teardown(() => db.close())
  const destination = join(dir, 'backups')
  const once = await loggedApp(t, { database: db, destination, interval: false, runOnStart: true })
  await waitFor(() => once.app.backup.status().published === 1)
  t.equal(once.app.backup.status().scheduledBy, 'none')
  // Another process with a schedule must be able to run it while the first one lives on.
  const scheduled = await loggedApp(t, { database: db, destination, interval: 200 })
  db.prepare('INSERT INTO pairs (n) VALUES (1)').run()
  await waitFor(() => scheduled.app.backup.status().published >= 1, 5000)
  t.equal(scheduled.app.backup.status().scheduledBy, 'this-process')
})

t.test('a run that waited for another process takes its id and time when its snapshot starts, so ids follow snapshot order', async (t) => {
  const dir = t.testdir()
  const db = createDatabase(join(dir, 'app.db'))
  t.teardown(() => db.close())
  const destination = join(dir, 'backups')
  // keep: 1 — with ids out of snapshot order, the run that waited would delete its own, newer, backup.
  const { app } = await loggedApp(t, { database: db, destination, interval: false, keep: 1 })
  const existing = await app.backup.now()
  const runLease = readdirSync(destination).find((name) => /^\.run-[0-9a-f]+\.lock$/.test(name))!
  // Another process's run in progress: its lease held by a connection of its own.
  const holder = new Lease(join(destination, runLease))
  t.teardown(() => holder.release())
  t.ok(holder.tryAcquire())

  db.prepare('INSERT INTO pairs (n) VALUES (1)').run()
  const waited = app.backup.now({ force: true })
  await new Promise((resolve) => setTimeout(resolve, 300))
  // Meanwhile the other process publishes its backup, of a snapshot it took after the waiting run was called (as
  // it would, under the lease), then lets the lease go.
  const othersAt = new Date()
  const others = newBackupId(othersAt)
  copyFileSync(existing.path, join(destination, `${others}.sqlite.tmp`))
  writeFileSync(join(destination, `${others}.json`), JSON.stringify({ ...existing.metadata, id: others, file: `${others}.sqlite`, createdAt: othersAt.toISOString() }))
  renameSync(join(destination, `${others}.sqlite.tmp`), join(destination, `${others}.sqlite`))
  const releasedAt = Date.now()
  holder.release()
  const result = await waited

  t.ok(Date.parse(result.metadata.createdAt) >= releasedAt, 'the time of the snapshot, not of the call')
  t.ok(result.id > others, `the newer snapshot has the later id (${result.id} > ${others})`)
  t.equal(timeOfId(result.id).getTime(), Date.parse(result.metadata.createdAt), 'id and createdAt agree')
  t.ok(existsSync(result.path), 'the backup it returned still exists after its own retention pass')
  t.same((await app.backup.list()).map((backup) => backup.id), [result.id], 'keep: 1 kept the newest snapshot')
})

t.test('a run that times out waiting for another process\'s run says so, not "a long write transaction"', async (t) => {
  const dir = t.testdir()
  const db = createDatabase(join(dir, 'app.db'))
  t.teardown(() => db.close())
  const destination = join(dir, 'backups')
  const { app } = await loggedApp(t, { database: db, destination, interval: false, timeout: 3000 })
  await app.backup.now()
  const holder = new Lease(join(destination, readdirSync(destination).find((name) => /^\.run-[0-9a-f]+\.lock$/.test(name))!))
  t.teardown(() => holder.release())
  t.ok(holder.tryAcquire(), 'another run holds the lease')
  await t.rejects(app.backup.now({ force: true }), { code: 'FST_SQLITE_BACKUP_TIMEOUT', message: /another process's backup of this database/ })
})

t.test('a starting process leaves alone what a run in progress elsewhere has written; the next run under the lease cleans up', async (t) => {
  const dir = t.testdir()
  const db = createDatabase(join(dir, 'app.db'))
  t.teardown(() => db.close())
  const destination = join(dir, 'backups')
  mkdirSync(destination)
  // Another process (in another container, say: its process id means nothing here) is publishing: it holds the run
  // lease, its snapshot is a temp file, and its record already has its final name, its data not yet.
  const scope = leaseScope(join(dir, 'app.db'), [destination])
  const holder = new Lease(join(destination, `.run-${scope}.lock`))
  t.teardown(() => holder.release())
  t.ok(holder.tryAcquire())
  const inFlight = '20260101T000000000Z-00c0ffee'
  const files = [`.tmp-${scope}-1-${inFlight}.sqlite`, `${inFlight}.json`, `.tmp-${2 ** 22 + 1}-${inFlight}.sqlite`]
  for (const name of files) writeFileSync(join(destination, name), 'in progress')

  const { app } = await loggedApp(t, { database: db, destination, interval: false, timeout: 5000 })
  for (const name of files) t.ok(existsSync(join(destination, name)), `${name} is still there after the start`)

  // The other run ends without publishing (it died, say): the next run here holds the lease, and cleans up.
  holder.release()
  const { id } = await app.backup.now()
  t.same(readdirSync(destination).filter((name) => !/\.lock$/.test(name)).sort(), [`${id}.json`, `${id}.sqlite`])
})
