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

/** What a form keeps after an error (never a password: it is typed again), and every problem found. */
export interface Kept {
  values?: Record<string, string | undefined>;
  errors?: string[];
}

/** Every problem with the form at once, not only the first. */
export const Problems: FC<{ errors?: string[] | undefined }> = ({ errors }) =>
  errors && errors.length > 1 ? (
    <ul class="errors" aria-label="Problems with the form">
      {errors.map((e) => (
        <li>{e}</li>
      ))}
    </ul>
  ) : null;

export const SetupPage: FC<{ pairingOpen: boolean; flash?: FlashMessage | undefined; kept?: Kept }> = ({
  pairingOpen,
  flash,
  kept,
}) => (
  <Box title="First-time setup" flash={flash}>
    <p>
      This gateway has no accounts and no default password. Create the first administrator. Prove you are at
      the device: type the one-time setup code from the gateway's console (or its label)
      {pairingOpen
        ? ', or leave it empty: the pairing button was pressed.'
        : ', or press the pairing button.'}
    </p>
    <Problems errors={kept?.errors} />
    <form method="post" action="/setup">
      <label for="setup-code">Setup code</label>
      <input
        id="setup-code"
        name="code"
        autocomplete="off"
        maxlength={32}
        required={!pairingOpen}
        value={kept?.values?.code}
      />
      <label for="setup-username">Administrator name (lower-case letters, digits, . _ -)</label>
      <input
        id="setup-username"
        name="username"
        autocomplete="username"
        required
        maxlength={32}
        pattern="[a-z][a-z0-9._\-]{1,31}"
        value={kept?.values?.username}
      />
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

export const LoginPage: FC<{ flash?: FlashMessage | undefined; username?: string | undefined }> = ({
  flash,
  username,
}) => (
  <Box title="Log in" flash={flash}>
    <form method="post" action="/login">
      <label for="login-username">User name</label>
      <input
        id="login-username"
        name="username"
        autocomplete="username"
        required
        maxlength={64}
        value={username}
      />
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

export const EnrollPage: FC<{
  secret: string;
  qrSvg: string;
  renewed: boolean;
  flash?: FlashMessage | undefined;
}> = ({ secret, qrSvg, renewed, flash }) => (
  <Box title="Set up your second factor" flash={flash}>
    <p>Every account needs an authenticator app. Scan the code, or type the key into the app by hand.</p>
    <p class="hint" id="enroll-key-note">
      {renewed
        ? 'This is a new key: if you scanned an earlier one, delete it from the app.'
        : 'Same key as before: the entry already in your app stays valid. Reloading this page or a wrong code does not change it.'}
    </p>
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
    <form method="post" action="/login/enroll/new-key">
      <p>
        <button type="submit" class="secondary">
          Start over with a new key
        </button>
      </p>
    </form>
  </Box>
);

/** After an admin set the password: the only page the account may see until it chooses its own. */
export const ForcedPasswordPage: FC<{
  csrf: string;
  flash?: FlashMessage | undefined;
  errors?: string[];
}> = ({ csrf, flash, errors }) => (
  <Box title="Choose a new password" flash={flash}>
    <p>An administrator set your password. Choose your own before you continue.</p>
    <Problems errors={errors} />
    <form method="post" action="/account/password">
      <input type="hidden" name="_csrf" value={csrf} />
      <label for="fp-current">The password you were given</label>
      <input id="fp-current" name="current" type="password" autocomplete="current-password" required />
      <label for="fp-new">New password (at least 12 characters)</label>
      <input id="fp-new" name="next" type="password" autocomplete="new-password" required minlength={12} />
      <label for="fp-again">New password again</label>
      <input id="fp-again" name="again" type="password" autocomplete="new-password" required minlength={12} />
      <p>
        <button type="submit">Change password</button>
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
