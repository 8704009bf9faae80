import type { Child, FC } from 'hono/jsx';
import { Qr } from './components.tsx';
import { type FlashMessage, Layout } from './layout.tsx';

const Box: FC<{ title: string; flash?: FlashMessage | undefined; children?: Child }> = ({
  title,
  flash,
  children,
}) => (
  <Layout title={title} flash={flash}>
    <section class="auth-box" aria-labelledby="auth-title">
      <h1 id="auth-title">{title}</h1>
      {children}
    </section>
  </Layout>
);

export const SetupPage: FC<{ pairingOpen: boolean; flash?: FlashMessage | undefined }> = ({
  pairingOpen,
  flash,
}) => (
  <Box title="First-time setup" flash={flash}>
    <p>
      This gateway has no accounts and no default password. Create the first administrator. Prove you are at
      the device: type the one-time setup code from the gateway's console (or its label)
      {pairingOpen
        ? ', or leave it empty: the pairing button was pressed.'
        : ', or press the pairing button.'}
    </p>
    <form method="post" action="/setup">
      <label for="setup-code">Setup code</label>
      <input id="setup-code" name="code" autocomplete="off" maxlength={32} required={!pairingOpen} />
      <label for="setup-username">Administrator name</label>
      <input id="setup-username" name="username" autocomplete="username" required maxlength={64} />
      <label for="setup-password">Password (at least 12 characters)</label>
      <input
        id="setup-password"
        name="password"
        type="password"
        autocomplete="new-password"
        required
        minlength={12}
      />
      <p>
        <button type="submit">Create administrator</button>
      </p>
    </form>
  </Box>
);

export const LoginPage: FC<{ flash?: FlashMessage | undefined }> = ({ flash }) => (
  <Box title="Log in" flash={flash}>
    <form method="post" action="/login">
      <label for="login-username">User name</label>
      <input id="login-username" name="username" autocomplete="username" required maxlength={64} />
      <label for="login-password">Password</label>
      <input id="login-password" name="password" type="password" autocomplete="current-password" required />
      <p>
        <button type="submit">Continue</button>
      </p>
    </form>
  </Box>
);

export const TotpPage: FC<{ flash?: FlashMessage | undefined }> = ({ flash }) => (
  <Box title="Second factor" flash={flash}>
    <form method="post" action="/login/totp">
      <label for="totp-code">Code from your authenticator app, or a recovery code</label>
      <input
        id="totp-code"
        name="code"
        inputmode="numeric"
        autocomplete="one-time-code"
        required
        maxlength={32}
      />
      <p>
        <button type="submit">Log in</button>
      </p>
    </form>
  </Box>
);

export const EnrollPage: FC<{ secret: string; qrSvg: string; flash?: FlashMessage | undefined }> = ({
  secret,
  qrSvg,
  flash,
}) => (
  <Box title="Set up your second factor" flash={flash}>
    <p>Every account needs an authenticator app. Scan the code, or type the key into the app by hand.</p>
    <Qr svg={qrSvg} label="QR code of the authenticator key" />
    <p>
      Key: <span class="secret">{secret}</span>
    </p>
    <form method="post" action="/login/enroll">
      <label for="enroll-code">The 6-digit code the app now shows</label>
      <input
        id="enroll-code"
        name="code"
        inputmode="numeric"
        autocomplete="one-time-code"
        required
        maxlength={8}
      />
      <p>
        <button type="submit">Confirm</button>
      </p>
    </form>
  </Box>
);

export const RecoveryCodesPage: FC<{ codes: string[] }> = ({ codes }) => (
  <Box title="Recovery codes">
    <p>
      Each code logs you in once if the authenticator is lost. They are shown only now: print them or keep
      them somewhere safe.
    </p>
    <ul class="secret" aria-label="Recovery codes">
      {codes.map((c) => (
        <li>{c}</li>
      ))}
    </ul>
    <p>
      <a class="button" href="/">
        Continue to the dashboard
      </a>
    </p>
  </Box>
);

export const ErrorPage: FC<{ status: number; message: string }> = ({ status, message }) => (
  <Box title={status === 403 ? 'Not allowed' : status === 404 ? 'Not found' : 'Something went wrong'}>
    <p role="alert">{message}</p>
    <p>
      <a href="/">Back to the dashboard</a>
    </p>
  </Box>
);
