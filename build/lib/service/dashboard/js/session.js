// jobwire dashboard: Who is signed in, and what the page shows: state every module reads and the sign-in writes.

export const session = {
  key: null,
  admin: false,
  tenant: null, // for tenant keys, once a job names it
};

// the mounted view, and the last stats frame (shown by an overview mounted between two frames)
export const page = { view: null, stats: null };
