//! The one FFI wrapper in warmline: libespeak-ng in synchronous mode.
//!
//! libespeak-ng keeps global state and is not thread-safe, so every call goes
//! through one process-wide lock. Audio arrives through a C callback that
//! copies the samples into a process-wide buffer read under the same lock.
#![allow(unsafe_code)]

use espeakng_sys as sys;
use std::ffi::{CString, c_int, c_short, c_void};
use std::sync::Mutex;

struct Engine {
    rate: u32,
    voice: Option<String>,
}

static ENGINE: Mutex<Option<Engine>> = Mutex::new(None);
static BUFFER: Mutex<Vec<i16>> = Mutex::new(Vec::new());

/// Receives synthesized audio from espeak-ng (called on the synthesizing thread).
unsafe extern "C" fn collect(
    wav: *mut c_short,
    samples: c_int,
    _events: *mut sys::espeak_EVENT,
) -> c_int {
    if !wav.is_null() && samples > 0 {
        // SAFETY: espeak-ng passes a buffer of `samples` 16-bit samples that stays
        // valid for the duration of this callback; we only read it.
        let chunk = unsafe { std::slice::from_raw_parts(wav, samples as usize) };
        BUFFER
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(chunk);
    }
    0 // continue synthesis
}

/// Initialises the engine and loads `voice`, as the first synthesis would:
/// a process that prepares and then synthesises is in the same state as one
/// that only synthesises.
pub fn prepare(voice: &str) -> Result<(), String> {
    let mut guard = ENGINE.lock().unwrap_or_else(|p| p.into_inner());
    engine_with(&mut guard, voice).map(|_| ())
}

/// The engine, initialised, with `voice` loaded.
fn engine_with<'g>(guard: &'g mut Option<Engine>, voice: &str) -> Result<&'g mut Engine, String> {
    if guard.is_none() {
        // SAFETY: initialisation runs once, under the ENGINE lock; a null path
        // selects the default espeak-ng-data folder.
        let rate = unsafe {
            sys::espeak_Initialize(
                sys::espeak_AUDIO_OUTPUT_AUDIO_OUTPUT_SYNCHRONOUS,
                0,
                std::ptr::null(),
                0,
            )
        };
        if rate <= 0 {
            return Err(
                "espeak_Initialize failed (is the espeak-ng-data package installed?)".into(),
            );
        }
        // SAFETY: `collect` is a valid `extern "C"` callback for the whole process lifetime.
        unsafe { sys::espeak_SetSynthCallback(Some(collect)) };
        *guard = Some(Engine {
            rate: rate as u32,
            voice: None,
        });
    }
    let Some(engine) = guard.as_mut() else {
        return Err("espeak-ng is not initialised".into());
    };
    if engine.voice.as_deref() != Some(voice) {
        let name = CString::new(voice).map_err(|_| format!("voice name {voice:?} contains NUL"))?;
        // SAFETY: `name` is a valid NUL-terminated string for the call.
        let status = unsafe { sys::espeak_SetVoiceByName(name.as_ptr()) };
        if status != sys::espeak_ERROR_EE_OK {
            engine.voice = None;
            return Err(format!("voice {voice:?} not found (error {status})"));
        }
        engine.voice = Some(voice.to_string());
    }
    Ok(engine)
}

/// Speaks `text` with `voice` at `words_per_minute`; returns samples and their rate.
pub fn synthesize(
    voice: &str,
    words_per_minute: u32,
    text: &str,
) -> Result<(Vec<i16>, u32), String> {
    let mut guard = ENGINE.lock().unwrap_or_else(|p| p.into_inner());
    let engine = engine_with(&mut guard, voice)?;
    let wpm = words_per_minute.clamp(80, 450) as c_int;
    // SAFETY: plain integer parameters.
    let status = unsafe { sys::espeak_SetParameter(sys::espeak_PARAMETER_espeakRATE, wpm, 0) };
    if status != sys::espeak_ERROR_EE_OK {
        return Err(format!("cannot set rate {wpm} (error {status})"));
    }
    let text = CString::new(text.replace('\0', " ")).map_err(|e| e.to_string())?;
    BUFFER.lock().unwrap_or_else(|p| p.into_inner()).clear();
    // SAFETY: `text` is a valid NUL-terminated UTF-8 buffer of the given size for
    // the whole (synchronous) call; no position, no identifier, no user data.
    let status = unsafe {
        sys::espeak_Synth(
            text.as_ptr() as *const c_void,
            text.as_bytes_with_nul().len(),
            0,
            sys::espeak_POSITION_TYPE_POS_CHARACTER,
            0,
            sys::espeakCHARS_UTF8,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        )
    };
    // SAFETY: no arguments; waits for synthesis to finish.
    unsafe { sys::espeak_Synchronize() };
    if status != sys::espeak_ERROR_EE_OK {
        return Err(format!("espeak_Synth failed (error {status})"));
    }
    let samples = std::mem::take(&mut *BUFFER.lock().unwrap_or_else(|p| p.into_inner()));
    Ok((samples, engine.rate))
}
