// Initiates the MongoDB replica set and creates its users, once; every `docker compose up`
// runs it again and it then only checks (and brings the application user's password and role
// up to date with the environment).
//
// Run by the `mongo-init` service with `mongosh mongodb://localhost:27017/admin FILE` inside
// the first member's network namespace (`network_mode: service:mongo-1`): connecting over
// localhost is what lets MongoDB's localhost exception initiate the set and create the first
// user while access control (the members' keyfile) is already on and no user exists yet.
//
// Environment:
//   RS_NAME                  replica set name (rs0); must match the members' --replSet
//   RS_MEMBERS               host:port of each member, comma-separated; the first is preferred
//                            as primary (priority 2)
//   MONGO_ROOT_USERNAME/_PASSWORD   an administrator (role root); unset: no users at all
//                                   (the laptop stack, whose members run without a keyfile)
//   MONGO_APP_USERNAME/_PASSWORD    the services' user: readWrite on MONGO_APP_DB only
//   MONGO_APP_DB             the services' database (MONGODB_DB)

const env = process.env;
const setName = env.RS_NAME || "rs0";
const hosts = (env.RS_MEMBERS || "localhost:27017")
  .split(",")
  .map((host) => host.trim())
  .filter((host) => host.length > 0);
const admin = db.getSiblingDB("admin");
const rootUser = env.MONGO_ROOT_USERNAME || "";
const rootPassword = env.MONGO_ROOT_PASSWORD || "";

function waitFor(what, check, seconds) {
  for (let i = 0; i < seconds * 2; i++) {
    if (check()) return;
    sleep(500);
  }
  throw new Error(`timed out after ${seconds} s waiting for ${what}`);
}

// 1. Once the users exist (any run after the first), everything below needs the root user.
let authenticated = false;
if (rootUser) {
  if (!rootPassword) throw new Error("MONGO_ROOT_USERNAME is set without MONGO_ROOT_PASSWORD");
  try {
    authenticated = admin.auth(rootUser, rootPassword).ok === 1;
  } catch (error) {
    // No such user yet: the localhost exception applies (step 3 creates it). A wrong password
    // for an existing user ends in step 3 too, where createUser is refused: a loud failure.
  }
}

// 2. Initiate the set, unless it was before. `hello` answers without authentication and shows
// `setName` only once the set is initiated.
if (!db.hello().setName) {
  const members = hosts.map((host, i) => ({ _id: i, host: host, priority: i === 0 ? 2 : 1 }));
  try {
    rs.initiate({ _id: setName, members: members });
    print(`replica set ${setName} initiated with ${hosts.join(", ")}`);
  } catch (error) {
    if (error.codeName !== "AlreadyInitialized") throw error;
  }
}
// The members elect a primary within seconds; users can only be created on it.
waitFor("this member to become primary", () => db.hello().isWritablePrimary === true, 180);

// 3. Users: the first through the localhost exception, the others as that administrator.
if (rootUser && !authenticated) {
  admin.createUser({ user: rootUser, pwd: rootPassword, roles: ["root"] });
  admin.auth(rootUser, rootPassword);
  print(`administrator ${rootUser} created`);
}
const appUser = env.MONGO_APP_USERNAME || "";
if (appUser) {
  if (!env.MONGO_APP_PASSWORD) throw new Error("MONGO_APP_USERNAME is set without MONGO_APP_PASSWORD");
  // readWrite covers what the services do: reads, writes, transactions, indexes, change streams.
  const roles = [{ role: "readWrite", db: env.MONGO_APP_DB || "campaigns" }];
  if (admin.getUser(appUser)) {
    admin.updateUser(appUser, { pwd: env.MONGO_APP_PASSWORD, roles: roles });
  } else {
    admin.createUser({ user: appUser, pwd: env.MONGO_APP_PASSWORD, roles: roles });
    print(`application user ${appUser} created`);
  }
}
print(`replica set ${setName} ready`);
