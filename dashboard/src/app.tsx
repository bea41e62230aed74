// The frame: sign-in when there is no key, otherwise the header, the navigation (a menu
// button at phone width) and the selected screen.
import { useEffect, useState } from 'preact/hooks';
import { api, forgetKey, setUnauthorizedHandler, storedKey, storeKey, ApiError } from './api';
import { useRoute, type Route } from './router';
import { OverviewScreen } from './screens/overview';
import { ProvidersScreen } from './screens/providers';
import { MessagesScreen } from './screens/messages';
import { MessageScreen } from './screens/message';
import { ApiKeysScreen } from './screens/api-keys';

const NAV: { screen: Route['screen']; label: string; hash: string }[] = [
  { screen: 'overview', label: 'Overview', hash: '#/overview' },
  { screen: 'providers', label: 'Providers', hash: '#/providers' },
  { screen: 'messages', label: 'Messages', hash: '#/messages' },
  { screen: 'api-keys', label: 'API keys', hash: '#/api-keys' },
];

const REVOKED = 'Your key was revoked or is wrong. Sign in again with a valid API key.';

export function App() {
  const [signedIn, setSignedIn] = useState(() => storedKey() !== null);
  const [notice, setNotice] = useState<string | undefined>();
  useEffect(() => {
    setUnauthorizedHandler(() => {
      forgetKey();
      setNotice(REVOKED);
      setSignedIn(false);
    });
  }, []);
  if (!signedIn) {
    return (
      <SignIn
        notice={notice}
        onSignedIn={() => {
          setNotice(undefined);
          setSignedIn(true);
        }}
      />
    );
  }
  return (
    <Shell
      onSignOut={() => {
        forgetKey();
        setNotice('You are signed out.');
        setSignedIn(false);
      }}
    />
  );
}

function SignIn(props: { notice?: string; onSignedIn: () => void }) {
  const [key, setKey] = useState('');
  const [error, setError] = useState<string | undefined>();
  const [busy, setBusy] = useState(false);
  const submit = async (e: Event) => {
    e.preventDefault();
    const trimmed = key.trim();
    if (!trimmed) {
      setError('Enter your API key.');
      return;
    }
    setBusy(true);
    setError(undefined);
    try {
      // A tenant key can list its own messages; the service token (no tenant) cannot.
      await api('/v1/messages?limit=1', { key: trimmed });
      storeKey(trimmed);
      props.onSignedIn();
    } catch (err) {
      if (err instanceof ApiError && (err.status === 401 || err.status === 403 || err.status === 400)) {
        setError('That key was not accepted: it is wrong, revoked, or not a tenant API key.');
      } else if (err instanceof ApiError) {
        setError(err.detail);
      } else {
        setError('Signing in failed. Try again.');
      }
      setBusy(false);
    }
  };
  return (
    <main class="signin">
      <form class="signin-card" onSubmit={submit} noValidate>
        <p class="brand">
          <span class="brand-dot" aria-hidden="true" /> Communication
        </p>
        <h1>Sign in</h1>
        <p class="explanation">Use one of your tenant's API keys. It stays in this browser tab only.</p>
        {props.notice ? (
          <p class="notice" role="status">
            {props.notice}
          </p>
        ) : null}
        <label for="api-key">API key</label>
        <input
          id="api-key"
          name="api-key"
          type="password"
          autoComplete="off"
          spellcheck={false}
          placeholder="lsc_…"
          value={key}
          onInput={(e) => setKey((e.target as HTMLInputElement).value)}
          aria-invalid={error ? 'true' : undefined}
          aria-describedby={error ? 'api-key-error' : undefined}
          autoFocus
        />
        {error ? (
          <p id="api-key-error" class="field-error" role="alert">
            {error}
          </p>
        ) : null}
        <button type="submit" class="button primary" disabled={busy}>
          {busy ? 'Checking…' : 'Sign in'}
        </button>
        <p class="hint">
          No key yet? An operator creates one with <code>communication api-key create --tenant YOUR-TENANT</code>.
        </p>
      </form>
    </main>
  );
}

function Shell(props: { onSignOut: () => void }) {
  const route = useRoute();
  const [menuOpen, setMenuOpen] = useState(false);
  useEffect(() => {
    setMenuOpen(false);
    document.getElementById('page-title')?.focus({ preventScroll: true });
    const current = NAV.find((n) => n.screen === route.screen)?.label ?? 'Message';
    document.title = `${current} — Communication`;
  }, [route.screen, route.id]);
  const active = route.screen === 'message' ? 'messages' : route.screen;
  return (
    <div class="shell">
      <a class="skip-link" href="#main">
        Skip to content
      </a>
      <header class="topbar">
        <button
          type="button"
          class="menu-button"
          aria-expanded={menuOpen ? 'true' : 'false'}
          aria-controls="main-nav"
          onClick={() => setMenuOpen(!menuOpen)}
        >
          Menu
        </button>
        <span class="brand">
          <span class="brand-dot" aria-hidden="true" /> Communication
        </span>
        <span class="spacer" />
        <button type="button" class="button subtle" onClick={props.onSignOut}>
          Sign out
        </button>
      </header>
      <div class="frame">
        <nav id="main-nav" aria-label="Main" class={menuOpen ? 'nav open' : 'nav'}>
          <ul>
            {NAV.map((n) => (
              <li key={n.screen}>
                <a href={n.hash} aria-current={active === n.screen ? 'page' : undefined} onClick={() => setMenuOpen(false)}>
                  {n.label}
                </a>
              </li>
            ))}
          </ul>
        </nav>
        <main id="main" class="content">
          {route.screen === 'overview' ? <OverviewScreen /> : null}
          {route.screen === 'providers' ? <ProvidersScreen /> : null}
          {route.screen === 'messages' ? <MessagesScreen /> : null}
          {route.screen === 'message' && route.id ? <MessageScreen id={route.id} /> : null}
          {route.screen === 'api-keys' ? <ApiKeysScreen /> : null}
        </main>
      </div>
    </div>
  );
}
