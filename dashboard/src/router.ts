// Hash routes (#/providers, #/messages/<id>): the intake serves one index.html, so the
// address after # is the screen, and links and the back button work without server help.
import { useEffect, useState } from 'preact/hooks';

export interface Route {
  screen: 'overview' | 'providers' | 'messages' | 'message' | 'api-keys';
  id?: string;
}

export function parseRoute(hash: string): Route {
  const parts = hash.replace(/^#\/?/, '').split('/').filter(Boolean);
  switch (parts[0]) {
    case 'providers':
      return { screen: 'providers' };
    case 'messages':
      return parts[1] ? { screen: 'message', id: decodeURIComponent(parts[1]) } : { screen: 'messages' };
    case 'api-keys':
      return { screen: 'api-keys' };
    default:
      return { screen: 'overview' };
  }
}

export function useRoute(): Route {
  const [route, setRoute] = useState(() => parseRoute(location.hash));
  useEffect(() => {
    const onHash = () => setRoute(parseRoute(location.hash));
    window.addEventListener('hashchange', onHash);
    return () => window.removeEventListener('hashchange', onHash);
  }, []);
  return route;
}

export function navigate(hash: string): void {
  if (location.hash !== hash) location.hash = hash;
}
