import t from 'tap'
import { statSync, readdirSync } from 'node:fs'
import { join } from 'node:path'
import { createDatabase, buildApp, count, integrityCheck, backupFiles } from './helpers'

t.test('now() publishes a complete backup with mode 0600 and its metadata', async (t) => {
  const dir = t.testdir()
  const db = createDatabase(join(dir, 'app.db'), { rows: 50 })
  t.teardown(() => db.close())
  const app = await buildApp(t, { database: db, destination: join(dir, 'backups'), interval: false })

  const result = await app.backup.now()
  t.equal(result.skipped, false)
  t.equal(count(result.path, 'items'), 50)
  t.equal(integrityCheck(result.path), 'ok')
  t.equal(statSync(result.path).mode & 0o777, 0o600)
  t.equal(statSync(join(dir, 'backups')).mode & 0o777, 0o700)
  t.equal(result.bytes, statSync(result.path).size)
  t.same(readdirSync(join(dir, 'backups')).sort(), [`${result.id}.json`, `${result.id}.sqlite`])
  t.same(backupFiles(join(dir, 'backups')), [result.path])
})
