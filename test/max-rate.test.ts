import t, { type Test } from 'tap'
import type { FastifyInstance } from 'fastify'
import { readdirSync, statSync } from 'node:fs'
import { join } from 'node:path'
import type Database from 'better-sqlite3'
import { createDatabase, buildApp, backupFiles, destinationFiles, tempFiles, integrityCheck, delay, waitFor } from './helpers'

// `maxRate`: backups write and delete at most that many bytes per second, and close() still comes at once.
// Only lower bounds on time are asserted (a rate limit makes them certain); upper bounds would flake.

const MiB = 1024 * 1024
const DELETING = /\.deleting$/

interface Deletion {
  /** First and last time the file being deleted was seen, and the sizes seen. */
  firstSeen: number
  lastSeen: number
  sizes: number[]
  /** Backups listed while it was being deleted. */
  listed: string[][]
}

/** Watches `dir` for a backup being deleted, every 10 ms, until stopped. */
function watchDeletion (t: Test, dir: string, app: FastifyInstance): { stop: () => Deletion | undefined } {
  let seen: Deletion | undefined
  const timer = setInterval(() => {
    const doomed = readdirSync(dir).find((name) => DELETING.test(name))
    if (doomed === undefined) return
    const now = performance.now()
    seen ??= { firstSeen: now, lastSeen: now, sizes: [], listed: [] }
    seen.lastSeen = now
    try {
      seen.sizes.push(statSync(join(dir, doomed)).size)
    } catch {
      // Gone between the listing and the stat.
    }
    app.backup.list().then((backups) => seen?.listed.push(backups.map((backup) => backup.id)), () => {})
  }, 10)
  t.teardown(() => clearInterval(timer))
  return { stop: () => { clearInterval(timer); return seen } }
}

/** A database that was big when its first backup was taken and is small now. */
async function bigBackupThenSmall (t: Test): Promise<{ dir: string, path: string, destination: string, db: Database.Database, oldId: string, oldBytes: number }> {
  const dir = t.testdir()
  const path = join(dir, 'app.db')
  const destination = join(dir, 'backups')
  const db = createDatabase(path, { rows: 24_000 })
  t.teardown(() => db.close())
  const first = await buildApp(t, { database: path, destination, interval: false })
  const old = await first.backup.now()
  await first.close()
  db.exec('DELETE FROM items WHERE id > 500')
  db.exec('VACUUM')
  return { dir, path, destination, db, oldId: old.id, oldBytes: old.bytes }
}

t.test('retention deletes an old backup no faster than maxRate, and it stops being a backup at once', async (t) => {
  const { destination, path, oldId, oldBytes } = await bigBackupThenSmall(t)
  t.ok(oldBytes > 20 * MiB, `the old backup is big (${oldBytes} bytes)`)
  const maxRate = 16 * MiB
  const app = await buildApp(t, { database: path, destination, interval: false, keep: 1, maxRate })
  const watch = watchDeletion(t, destination, app)
  const result = await app.backup.now({ force: true })
  const deletion = watch.stop()
  t.ok(deletion, 'the old backup was seen being deleted')
  if (deletion === undefined) return
  // Deleted from its end in 8 MiB steps: the first step goes at once, then one every 0.5 s.
  const floor = ((oldBytes - 2 * 8 * MiB) / maxRate) * 1000
  const span = deletion.lastSeen - deletion.firstSeen
  t.ok(span >= floor, `deleting ${oldBytes} bytes at ${maxRate} B/s took at least ${Math.round(floor)} ms (seen for ${Math.round(span)} ms)`)
  t.ok(deletion.sizes.some((size) => size < oldBytes) && deletion.sizes.at(-1)! < deletion.sizes[0], 'it shrank step by step')
  t.notOk(deletion.listed.some((ids) => ids.includes(oldId)), 'a backup being deleted is never listed')
  t.same(backupFiles(destination), [join(destination, `${result.id}.sqlite`)], 'only the new backup is left')
  t.same(tempFiles(destination), [], 'and no temp file')
})

t.test('close() during a throttled deletion comes within closeTimeout and leaves nothing half-deleted', async (t) => {
  const { destination, path } = await bigBackupThenSmall(t)
  const closeTimeout = 200
  const app = await buildApp(t, { database: path, destination, interval: false, keep: 1, maxRate: '1MiB', closeTimeout })
  const run = app.backup.now({ force: true })
  run.catch(() => {})
  await waitFor(() => readdirSync(destination).some((name) => DELETING.test(name)))
  const started = performance.now()
  await app.close()
  const took = performance.now() - started
  t.ok(took < closeTimeout + 3000, `close() within closeTimeout (${closeTimeout} ms) + 3 s: ${Math.round(took)} ms`)
  const result = await run
  t.same(backupFiles(destination), [join(destination, `${result.id}.sqlite`)], 'the new backup stays, the old one is gone')
  t.equal(integrityCheck(result.path), 'ok')
  t.same(tempFiles(destination), [], 'nothing half-deleted is left')
})

t.test('close() during a throttled snapshot comes within closeTimeout and removes the partial copy', async (t) => {
  const dir = t.testdir()
  const path = join(dir, 'app.db')
  const destination = join(dir, 'backups')
  createDatabase(path, { rows: 24_000 }).close()
  const closeTimeout = 200
  const app = await buildApp(t, { database: path, destination, interval: false, maxRate: '2MiB/s', closeTimeout })
  const run = app.backup.now()
  run.catch(() => {})
  await waitFor(() => tempFiles(destination).some((name) => statSync(join(destination, name)).size > 2 * MiB))
  const started = performance.now()
  await app.close()
  const took = performance.now() - started
  t.ok(took < closeTimeout + 3000, `close() within closeTimeout (${closeTimeout} ms) + 3 s: ${Math.round(took)} ms`)
  await t.rejects(run, { code: 'FST_SQLITE_BACKUP_CLOSED' })
  await delay(50)
  t.same(destinationFiles(destination), [], 'no copy, partial or whole')
})
