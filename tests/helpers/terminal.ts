// What a terminal would show after a stream of output: lines, carriage returns, cursor-up and clear-below sequences.

/** The visible lines after `text`, as a terminal renders the sequences the live progress block uses. */
export function screen(text: string): string[] {
  const lines = [''];
  let row = 0;
  let col = 0;
  for (const m of text.matchAll(/\x1b\[(\d*)([AJ])|\r|\n|[^\x1b\r\n]+/g)) {
    const token = m[0];
    if (m[2] === 'A') {
      row = Math.max(0, row - Number(m[1] || 1));
    } else if (m[2] === 'J') {
      // ESC[0J: clear from the cursor to the end of the screen.
      lines[row] = lines[row]!.slice(0, col);
      lines.length = row + 1;
    } else if (token === '\r') {
      col = 0;
    } else if (token === '\n') {
      row++;
      col = 0;
      while (lines.length <= row) lines.push('');
    } else {
      const line = lines[row]!.padEnd(col);
      lines[row] = line.slice(0, col) + token + line.slice(col + token.length);
      col += token.length;
    }
  }
  return lines.at(-1) === '' ? lines.slice(0, -1) : lines;
}
