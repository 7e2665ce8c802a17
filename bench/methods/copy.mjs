// The copy limit: the least any full backup of the file must cost, a plain file copy made durable. Not a valid
// backup of a live database (nothing stops writers), so its copies are not checked; it is the baseline for ratios.
import { copyFile, open } from 'node:fs/promises'
import { join } from 'node:path'

export const name = 'copy'
export const unchecked = true

export async function setup () {}

export async function backup ({ dbPath, scratchDir }) {
  const target = join(scratchDir, 'plain-copy.sqlite')
  await copyFile(dbPath, target)
  const handle = await open(target, 'r+')
  try {
    await handle.sync()
  } finally {
    await handle.close()
  }
  return { path: target }
}
