//! The service itself: namespaces, the simulated ownership database and thumbnail origin, the
//! shared state and the routes. `main.rs` wires it to flags and a socket; `tests/service_storm.rs`
//! runs the same router in-process over a store that lies.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use scoped_cache::bus::BusTransport;
use scoped_cache::store::RemoteStore;
use scoped_cache::{
    Cache, Client, Codec, CodecError, DeviceId, IdError, Key, KeyRing, LoadError, Namespace,
    Policy, RawBytes, Stats, TenantId, ViolationReport, ViolationSink,
};
use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// The header an authenticating gateway sets to the caller's user id.
pub const USER_HEADER: &str = "x-user-id";

/// A thumbnail.
pub const THUMBNAIL_ROUTE: &str = "/users/{user}/cameras/{camera}/events/{event}/thumbnail";

/// Moving a camera to another user (the body).
pub const TRANSFER_ROUTE: &str = "/cameras/{camera}/transfer";

/// Whether a user owns a camera. With a bus, cached under `Policy::Coherent`: a transfer drops
/// it on every instance before it answers. Without one, never cached (`Policy::Bypass`): an
/// authorisation relation cached without a way to revoke it everywhere would keep a moved
/// camera visible to its old owner until the entry expired.
pub struct CameraOwnership;

impl Namespace for CameraOwnership {
    const NAME: &'static str = "camera_owner";
    const SCHEMA: u16 = 1;
    type Item = ();
    type Value = bool;
    type Codec = BoolCodec;
}

/// One byte per relation.
pub struct BoolCodec;

impl Codec<bool> for BoolCodec {
    fn encode(value: &bool) -> Result<Bytes, CodecError> {
        Ok(Bytes::from_static(if *value { b"\x01" } else { b"\x00" }))
    }

    fn decode(payload: Bytes) -> Result<bool, CodecError> {
        match payload.as_ref() {
            [0] => Ok(false),
            [1] => Ok(true),
            _ => Err(CodecError("not a one-byte boolean".into())),
        }
    }
}

/// The thumbnail of one event of one camera of one user.
pub struct Thumbnails;

impl Namespace for Thumbnails {
    const NAME: &'static str = "thumb";
    const SCHEMA: u16 = 1;
    type Item = u64; // the event id
    type Value = Bytes;
    type Codec = RawBytes;
}

/// The source of truth for who owns which camera: an in-memory table with a database's latency.
pub struct Database {
    cameras: RwLock<HashMap<String, HashSet<String>>>,
    latency: Duration,
}

impl Database {
    /// A database of `(user, cameras)` rows, each query taking `latency`.
    pub fn new<U, C>(latency: Duration, rows: impl IntoIterator<Item = (U, C)>) -> Self
    where
        U: Into<String>,
        C: IntoIterator,
        C::Item: Into<String>,
    {
        let cameras = rows
            .into_iter()
            .map(|(user, cameras)| (user.into(), cameras.into_iter().map(Into::into).collect()))
            .collect();
        Self {
            cameras: RwLock::new(cameras),
            latency,
        }
    }

    /// alice owns cam-1 and cam-2, bob owns cam-3; 2 ms per query.
    pub fn demo() -> Self {
        Self::new(
            Duration::from_millis(2),
            [("alice", vec!["cam-1", "cam-2"]), ("bob", vec!["cam-3"])],
        )
    }

    /// Whether `user` owns `camera`.
    async fn owns(&self, user: &TenantId, camera: &DeviceId) -> Result<bool, Infallible> {
        tokio::time::sleep(self.latency).await;
        let cameras = self.cameras.read().unwrap_or_else(|e| e.into_inner());
        let owned = cameras
            .get(&user.to_string())
            .is_some_and(|cameras| cameras.contains(&camera.to_string()));
        Ok(owned)
    }

    /// Moves `camera` from `from` to `to`; false when `from` does not own it.
    async fn transfer(&self, camera: &DeviceId, from: &TenantId, to: &TenantId) -> bool {
        tokio::time::sleep(self.latency).await;
        let mut cameras = self.cameras.write().unwrap_or_else(|e| e.into_inner());
        let camera = camera.to_string();
        let moved = cameras
            .get_mut(&from.to_string())
            .is_some_and(|owned| owned.remove(&camera));
        if moved {
            cameras.entry(to.to_string()).or_default().insert(camera);
        }
        moved
    }
}

/// Where thumbnails come from on a miss (an object store, a transcoder): slow, deterministic,
/// and down when told to be (an outage).
pub struct ThumbnailOrigin {
    latency: Duration,
    down: AtomicBool,
}

/// The origin failed a fetch.
#[derive(Debug, thiserror::Error)]
#[error("thumbnail origin is down")]
pub struct OriginDown;

impl ThumbnailOrigin {
    /// An origin that takes `latency` per thumbnail.
    pub fn new(latency: Duration) -> Self {
        Self {
            latency,
            down: AtomicBool::new(false),
        }
    }

    /// From now on every fetch fails (`true`), or succeeds again (`false`).
    #[cfg_attr(not(test), allow(dead_code))] // an outage, in tests/service_storm.rs
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    async fn fetch(
        &self,
        user: &TenantId,
        camera: &DeviceId,
        event: u64,
    ) -> Result<Bytes, OriginDown> {
        tokio::time::sleep(self.latency).await;
        match self.down.load(Ordering::SeqCst) {
            true => Err(OriginDown),
            false => Ok(render_thumbnail(user, camera, event)),
        }
    }
}

/// The thumbnail of `event` of `camera` of `user`: a JPEG start and JFIF header, a comment naming
/// its owner, a comment with a BLAKE3 hash of the owner, and the JPEG end. Equal ids give equal
/// bytes, so a caller can tell exactly whose thumbnail it was handed.
pub fn render_thumbnail(user: &TenantId, camera: &DeviceId, event: u64) -> Bytes {
    const START_AND_JFIF: [u8; 20] = [
        0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10, b'J', b'F', b'I', b'F', 0x00, 0x01, 0x01, 0x00, 0x00,
        0x01, 0x00, 0x01, 0x00, 0x00,
    ];
    let (user, camera) = (user.to_string(), camera.to_string());
    let mut hasher = blake3::Hasher::new();
    // Length-prefixed, so ("ab", "c") and ("a", "bc") hash differently.
    for part in [user.as_bytes(), camera.as_bytes(), &event.to_be_bytes()] {
        hasher.update(&(part.len() as u64).to_be_bytes());
        hasher.update(part);
    }
    let owner = format!("{user}/{camera}/{event}");
    let mut jpeg = Vec::with_capacity(START_AND_JFIF.len() + owner.len() + 64 + 10);
    jpeg.extend_from_slice(&START_AND_JFIF);
    push_comment(&mut jpeg, owner.as_bytes());
    push_comment(&mut jpeg, hasher.finalize().to_hex().as_bytes());
    jpeg.extend_from_slice(&[0xFF, 0xD9]);
    Bytes::from(jpeg)
}

/// A JPEG comment segment. Ids are at most 128 bytes, so a comment is far below the segment's
/// 65,533-byte limit; longer text is cut there rather than written with a wrong length.
fn push_comment(jpeg: &mut Vec<u8>, text: &[u8]) {
    let text = &text[..text.len().min(usize::from(u16::MAX) - 2)];
    let length = u16::try_from(text.len() + 2).unwrap_or(u16::MAX);
    jpeg.extend_from_slice(&[0xFF, 0xFE]);
    jpeg.extend_from_slice(&length.to_be_bytes());
    jpeg.extend_from_slice(text);
}

/// What the service is built from.
pub struct Config {
    /// The shared tier (`MemoryStore`, `RedisStore`, or a `FaultyStore` around one).
    pub store: Arc<dyn RemoteStore>,
    /// Seals and verifies what goes into `store`; the same secret on every instance.
    pub key_ring: KeyRing,
    /// Who owns which camera: one database for every instance.
    pub database: Arc<Database>,
    pub origin: ThumbnailOrigin,
    /// Thumbnails kept in-process; 0 sends every read to `store`.
    pub local_capacity: u64,
    /// How long a thumbnail stays cached.
    pub ttl: Duration,
    /// How long past its TTL a thumbnail is kept, and served (with an `Age` header) while the
    /// origin is down or slower than the load timeout.
    pub stale_for: Duration,
    /// How long a database query or origin fetch may take before the request fails with 503.
    pub load_timeout: Duration,
    /// Called with every cached value the cache refused.
    pub on_violation: ViolationSink,
    /// The invalidation bus the service's instances share: with one, ownership is cached and
    /// both namespaces are coherent (a transfer reaches every instance); without, ownership is
    /// never cached and a transfer reaches this instance's thumbnails only.
    pub bus: Option<Arc<dyn BusTransport>>,
}

impl Config {
    /// The demo database, a 20 ms origin, 10,000 thumbnails in-process for 10 minutes (then
    /// served stale for up to an hour while the origin is down), a 2 s load timeout, and
    /// violations logged to stderr.
    pub fn new(store: Arc<dyn RemoteStore>, key_ring: KeyRing) -> Self {
        Self {
            store,
            key_ring,
            database: Arc::new(Database::demo()),
            origin: ThumbnailOrigin::new(Duration::from_millis(20)),
            local_capacity: 10_000,
            ttl: Duration::from_secs(600),
            stale_for: Duration::from_secs(3600),
            load_timeout: Duration::from_secs(2),
            on_violation: Arc::new(log_violation),
            bus: None,
        }
    }
}

/// A refused value is a security event: say whose read it was and what was wrong (no bytes).
fn log_violation(report: &ViolationReport) {
    eprintln!(
        "refused a cached value: namespace {}, {:?} tier, read for {}: {}",
        report.namespace, report.tier, report.expected, report.violation
    );
}

/// The service's state, shared by every request.
pub struct App {
    ownership: Cache<CameraOwnership>,
    thumbnails: Cache<Thumbnails>,
    database: Arc<Database>,
    origin: ThumbnailOrigin,
}

impl App {
    /// Builds the caches over `config.store`.
    ///
    /// # Errors
    ///
    /// When the cache configuration is refused (a zero TTL).
    pub fn new(config: Config) -> Result<Arc<Self>, scoped_cache::BuildError> {
        let sink = config.on_violation;
        let mut client = Client::builder()
            .key_ring(config.key_ring)
            .remote_shared(config.store)
            .on_violation(move |report| sink(report));
        let coherent = config.bus.is_some();
        if let Some(bus) = config.bus {
            client = client.bus(bus);
        }
        let client = client.build()?;
        let ownership = client
            .cache::<CameraOwnership>()
            .load_timeout(Some(config.load_timeout));
        let ownership = match coherent {
            true => ownership.policy(Policy::Coherent {
                l1_ttl: Duration::from_secs(60),
            }),
            false => ownership.policy(Policy::Bypass).local_capacity(0),
        };
        let mut thumbnails = client
            .cache::<Thumbnails>()
            .local_capacity(config.local_capacity)
            .ttl(config.ttl)
            .stale_for(config.stale_for)
            .load_timeout(Some(config.load_timeout));
        if coherent {
            thumbnails = thumbnails.policy(Policy::Coherent { l1_ttl: config.ttl });
        }
        let (ownership, thumbnails) = (ownership.build()?, thumbnails.build()?);
        Ok(Arc::new(Self {
            ownership,
            thumbnails,
            database: config.database,
            origin: config.origin,
        }))
    }

    /// The HTTP routes over this state.
    pub fn router(self: &Arc<Self>) -> Router {
        Router::new()
            .route(THUMBNAIL_ROUTE, get(thumbnail))
            .route(TRANSFER_ROUTE, post(transfer))
            .with_state(Arc::clone(self))
    }

    /// The thumbnail origin (to take it down and up again, as an outage would).
    #[cfg_attr(not(test), allow(dead_code))] // an outage, in tests/service_storm.rs
    pub fn origin(&self) -> &ThumbnailOrigin {
        &self.origin
    }

    /// The counters of the thumbnail cache: hits, loads, refused values by kind…
    pub fn thumbnail_stats(&self) -> Stats {
        self.thumbnails.stats()
    }

    /// The counters of the ownership namespace.
    pub fn ownership_stats(&self) -> Stats {
        self.ownership.stats()
    }
}

/// Why a request got no thumbnail.
#[derive(Debug)]
enum Refusal {
    /// No authenticated user.
    Unauthenticated,
    /// The authenticated user asked for another user's path.
    OtherUser,
    /// The path names ids that cannot be ids.
    BadId(IdError),
    /// The user does not own the camera (or the user or camera does not exist).
    NotOwner,
    /// The database or the origin failed or timed out.
    Unavailable(&'static str, LoadError),
    /// A transfer was written to the database but not invalidated everywhere.
    NotInvalidated(scoped_cache::Error),
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let (status, body) = match self {
            Refusal::Unauthenticated => (
                StatusCode::UNAUTHORIZED,
                format!("missing or unreadable {USER_HEADER} header\n"),
            ),
            // One answer for both: a caller cannot tell another user's camera from a missing one.
            Refusal::OtherUser | Refusal::NotOwner => {
                (StatusCode::FORBIDDEN, "not your camera\n".to_owned())
            }
            Refusal::BadId(error) => (
                StatusCode::BAD_REQUEST,
                format!("bad id in path: {error}\n"),
            ),
            Refusal::Unavailable(what, error) => {
                eprintln!("{what} failed: {error}");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("{what} unavailable, retry later\n"),
                )
            }
            // The move stands; retrying the invalidation is safe, and the caller must.
            Refusal::NotInvalidated(error) => {
                eprintln!("transfer invalidation failed: {error}");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "transferred, but not yet invalidated everywhere: retry\n".to_owned(),
                )
            }
        };
        (status, body).into_response()
    }
}

/// The authenticated caller, from the gateway's header.
fn caller(headers: &HeaderMap) -> Result<&str, Refusal> {
    headers
        .get(USER_HEADER)
        .and_then(|value| value.to_str().ok())
        .ok_or(Refusal::Unauthenticated)
}

/// `POST /cameras/{camera}/transfer`, body: the new owner. Only the camera's owner may move
/// it. Writes the database, then drops the old owner's relation and thumbnails of the camera
/// (and the new owner's cached "no") on every instance; when it answers 204, no instance
/// serves the old owner anything of the camera.
async fn transfer(
    State(app): State<Arc<App>>,
    Path(camera): Path<String>,
    headers: HeaderMap,
    new_owner: String,
) -> Result<Response, Refusal> {
    let from = TenantId::new(caller(&headers)?).map_err(Refusal::BadId)?;
    let camera = DeviceId::new(&camera).map_err(Refusal::BadId)?;
    let to = TenantId::new(new_owner.trim()).map_err(Refusal::BadId)?;
    if !app.database.transfer(&camera, &from, &to).await {
        return Err(Refusal::NotOwner);
    }
    for owner in [&from, &to] {
        let relation = Key::<CameraOwnership>::new(owner.clone(), camera.clone(), ());
        app.ownership
            .invalidate(&relation)
            .await
            .map_err(Refusal::NotInvalidated)?;
    }
    app.thumbnails
        .invalidate_device(&from, &camera)
        .await
        .map_err(Refusal::NotInvalidated)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET /users/{user}/cameras/{camera}/events/{event}/thumbnail`.
async fn thumbnail(
    State(app): State<Arc<App>>,
    Path((user, camera, event)): Path<(String, String, u64)>,
    headers: HeaderMap,
) -> Result<Response, Refusal> {
    let caller = caller(&headers)?;
    if caller != user {
        return Err(Refusal::OtherUser);
    }
    let user = TenantId::new(&user).map_err(Refusal::BadId)?;
    let camera = DeviceId::new(&camera).map_err(Refusal::BadId)?;

    let relation = Key::<CameraOwnership>::new(user.clone(), camera.clone(), ());
    let owns = app
        .ownership
        .get_or_load(&relation, || app.database.owns(&user, &camera))
        .await
        .map_err(|error| Refusal::Unavailable("ownership database", error))?;
    if !owns {
        return Err(Refusal::NotOwner);
    }

    let key = Key::<Thumbnails>::new(user.clone(), camera.clone(), event);
    // The fetch may go on after this request is answered (stale), so it owns what it needs.
    let fetch = {
        let app = Arc::clone(&app);
        move || async move { app.origin.fetch(&user, &camera, event).await }
    };
    let thumbnail = app
        .thumbnails
        .get_or_refresh(&key, fetch)
        .await
        .map_err(|error| Refusal::Unavailable("thumbnail origin", error))?;
    // One user's image: no shared HTTP cache may keep it; a stale one is not to be kept at all.
    let cache_control = match thumbnail.is_stale() {
        true => "private, no-cache",
        false => "private, max-age=600",
    };
    let headers = [
        (header::CONTENT_TYPE, "image/jpeg".to_owned()),
        (header::CACHE_CONTROL, cache_control.to_owned()),
        (header::AGE, thumbnail.age.as_secs().to_string()),
    ];
    Ok((headers, thumbnail.value).into_response())
}
