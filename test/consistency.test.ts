import t from 'tap'
import { join } from 'node:path'
import { createDatabase, buildApp, count, integrityCheck, startPairWriter, delay, highestPair } from './helpers'

for (const journalMode of ['wal', 'delete'] as const) {
  t.test(`${journalMode}: 20+ backups under a writer in another process are consistent and complete`, async (t) => {
    const dir = t.testdir()
    const path = join(dir, 'app.db')
    createDatabase(path, { journalMode, rows: 500 }).close()
    const app = await buildApp(t, { database: path, destination: join(dir, 'backups'), interval: false, keep: 5 })
    await startPairWriter(t, path)

    const runs = 22
    for (let i = 0; i < runs; i++) {
      await delay(20)
      // Row ids committed before the call must all be in the backup that the call returns.
      const committedBefore = highestPair(path)
      const result = await app.backup.now()
      t.equal(result.skipped, false)
      const pairs = count(result.path, 'pairs')
      t.equal(integrityCheck(result.path), 'ok', `backup ${i}: integrity_check`)
      t.equal(pairs % 2, 0, `backup ${i}: ${pairs} rows, no torn transaction`)
      t.ok(highestPair(result.path) >= committedBefore, `backup ${i}: holds every commit made before now()`)
      t.equal(count(result.path, 'items'), 500)
    }
    t.equal(app.backup.status().published, runs)
  })
}
