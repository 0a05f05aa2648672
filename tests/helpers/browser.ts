// Headless Chromium for tests that look at a page as a person would: Debian's chromium driven by playwright-core.
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Browser, Page } from 'playwright-core';
import { PROJECT_ROOT } from './runner.ts';

export const CHROMIUM = process.env.PAUSEPIPE_CHROMIUM ?? '/usr/bin/chromium';
export const CHROMIUM_PRESENT = existsSync(CHROMIUM);
/** Where screenshots are kept for a person to look at (gitignored). */
export const TEST_ARTIFACTS = path.join(PROJECT_ROOT, 'test-artifacts');

// No sandbox (tests run as root in CI), no GPU, and nothing that reaches the network by itself.
const FLAGS = ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--no-first-run', '--disable-sync'];

/** Opens a local file in a fresh headless Chromium; `close` ends the browser. */
export async function openFile(file: string, width = 1400): Promise<{ page: Page; close: () => Promise<void> }> {
  const { chromium } = await import('playwright-core');
  const browser: Browser = await chromium.launch({ executablePath: CHROMIUM, args: FLAGS });
  const page = await browser.newPage({ viewport: { width, height: 900 } });
  await page.goto(pathToFileURL(file).href);
  return { page, close: () => browser.close() };
}

/** A full-page screenshot under test-artifacts/; returns its path. */
export async function keepScreenshot(page: Page, name: string): Promise<string> {
  await mkdir(TEST_ARTIFACTS, { recursive: true });
  const file = path.join(TEST_ARTIFACTS, name);
  await page.screenshot({ path: file, fullPage: true });
  return file;
}
