// The copy limit: the least any full backup of the file must cost, a plain file copy made durable. Not a valid
// backup of a live database (nothing stops writers), so its copies are not checked; it is the baseline for ratios.
// options.rotate: a previous copy exists, and is deleted after the new one is durable, as a script would rotate.
// options.keep: a previous copy exists and stays (a script keeping two copies).
import { copyFile, open, unlink } from 'node:fs/promises'
import { join } from 'node:path'

export const name = 'copy'
export const unchecked = true

export async function setup () {}

export async function prepare (ctx) {
  if (ctx.options.rotate || ctx.options.keep) await durableCopy(ctx.dbPath, join(ctx.scratchDir, 'previous-copy.sqlite'))
}

export async function backup ({ dbPath, scratchDir, options }) {
  const target = join(scratchDir, 'plain-copy.sqlite')
  await durableCopy(dbPath, target)
  if (options.rotate) await unlink(join(scratchDir, 'previous-copy.sqlite'))
  return { path: target }
}

async function durableCopy (from, to) {
  await copyFile(from, to)
  const handle = await open(to, 'r+')
  try {
    await handle.sync()
  } finally {
    await handle.close()
  }
}
