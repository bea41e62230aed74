import { defineConfig } from 'vite';

// The intake serves dist/ at /dashboard/ under a strict Content-Security-Policy (no inline
// script or style), so the build emits only files: hashed JS and CSS under assets/.
export default defineConfig({
  base: '/dashboard/',
  oxc: {
    jsx: { runtime: 'automatic', importSource: 'preact' },
  },
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    assetsInlineLimit: 0,
    modulePreload: { polyfill: false },
    sourcemap: false,
  },
  server: {
    proxy: { '/v1': 'http://127.0.0.1:8080' },
  },
});
