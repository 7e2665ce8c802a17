import t from 'tap'
import { join } from 'node:path'
import { readFileSync } from 'node:fs'
import { createDatabase, buildApp, count, backupFiles, destinationFiles } from './helpers'

t.test('several local directories: each gets every backup, and each can be read', async (t) => {
  const dir = t.testdir()
  const db = createDatabase(join(dir, 'app.db'))
  t.teardown(() => db.close())
  const first = join(dir, 'a')
  const second = join(dir, 'b')
  const app = await buildApp(t, { database: db, destination: [first, second], keep: 2, interval: false })

  const ids: string[] = []
  for (let i = 0; i < 3; i++) ids.push((await app.backup.now({ force: true })).id)
  const names = (directory: string): string[] => backupFiles(directory).map((file) => file.slice(directory.length + 1))
  t.same(names(first), ids.slice(1).map((id) => `${id}.sqlite`), 'retention in the first')
  t.same(names(second), ids.slice(1).map((id) => `${id}.sqlite`), 'and in the second')
  t.same(destinationFiles(second).filter((name) => name.startsWith('.tmp-')), [], 'no temp file left in the copy')
  const record = JSON.parse(readFileSync(join(second, `${ids[2]}.json`), 'utf8'))
  t.match(record, { id: ids[2], file: `${ids[2]}.sqlite`, compression: 'none', storedBytes: record.bytes })

  t.equal((await app.backup.verify(ids[2], { destination: 1 })).ok, true)
  const to = join(dir, 'restored.db')
  await app.backup.restore(ids[2], { to, destination: 1 })
  t.equal(count(to, 'items'), 100)
  await t.rejects(app.backup.verify(undefined, { destination: -1 }), { code: 'FST_SQLITE_BACKUP_INVALID_OPTION' })
  await t.rejects(app.backup.list(null as never), { code: 'FST_SQLITE_BACKUP_INVALID_OPTION' })
  t.match(app.backup.status().destinations, [
    { name: first, type: 'local', lastError: null, lastBackupId: ids[2], kept: { count: 2 } },
    { name: second, type: 'local', lastError: null, lastBackupId: ids[2], kept: { count: 2 } }
  ])
})
