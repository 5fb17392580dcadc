//! A safe wrapper over libx264 (through `x264-sys`): open an encoder configured for interactive
//! streaming, encode I420 pictures with optional per-macroblock quantiser offsets, change the
//! bitrate on the fly, drain, close. All of the element's `unsafe` lives in this file.
//!
//! Lifetimes of what we lend libx264, checked against x264 (build 164) `encoder/encoder.c`:
//!
//! - The picture planes are copied into x264's own frame (`x264_frame_copy_picture`) inside
//!   `x264_encoder_encode`, before it returns, whatever the lookahead depth.
//! - `prop.quant_offsets` is consumed inside the same call: `x264_adaptive_quant_frame` copies it
//!   into the frame's `f_qp_offset` array, then x264 calls `prop.quant_offsets_free` (which we
//!   leave null) and only then queues the frame for the lookahead. So a borrowed offsets array
//!   may be reused or freed as soon as `x264_encoder_encode` returns, even with delayed frames.
//! - The NAL payloads returned by `x264_encoder_encode` stay valid only until the next call on
//!   the same encoder; we copy them out before returning.

use std::ffi::c_int;
use std::mem::MaybeUninit;
use std::ptr::{self, NonNull};

use x264_sys as sys;

/// x264's adaptive-quantisation strength. `ultrafast` turns AQ off, and with AQ off libx264
/// silently ignores `quant_offsets`; a tiny variance-AQ strength re-enables the offsets while
/// leaving x264's own per-block decisions almost untouched.
pub(crate) const AQ_STRENGTH: f32 = 0.01;
/// VBV buffer, in frame intervals of the target bitrate: small, so frame sizes stay flat (no
/// P-frame above about twice the mean) and a frame rarely waits in the network for the one before
/// it. Measured at 720p30, 2 Mbit/s, two slice threads: with 2 frames libx264's row-level VBV
/// planning across slice threads is so cautious that it spends only 43–48 % of the target, and a
/// region of interest then shifts the output size by up to 75 %; with 3 frames 72–76 % and
/// 3–10 %; with 4 frames 80–83 % (over the first two seconds, the IDR included) and 1–4 %.
pub(crate) const VBV_FRAMES: u32 = 4;
/// H.264 VUI code for BT.601 (SMPTE 170M) primaries, transfer and matrix: what the capture
/// crate's RGBA→I420 converter produces.
const VUI_BT601: c_int = 6;

/// How to open an encoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Config {
    /// Picture width in pixels (even).
    pub width: u32,
    /// Picture height in pixels (even).
    pub height: u32,
    /// Frame rate numerator.
    pub fps_num: u32,
    /// Frame rate denominator.
    pub fps_den: u32,
    /// Target (and VBV maximum) bitrate in kbit/s.
    pub bitrate_kbps: u32,
    /// Longest distance between IDR pictures (or intra refresh cycles), in frames.
    pub key_int_max: u32,
    /// Periodic intra refresh instead of IDR pictures.
    pub intra_refresh: bool,
    /// Slice threads (at least 1).
    pub threads: u32,
}

impl Config {
    /// Macroblock columns and rows of the picture (sizes rounded up to 16).
    pub fn mb_size(&self) -> (usize, usize) {
        (
            self.width.div_ceil(16) as usize,
            self.height.div_ceil(16) as usize,
        )
    }

    /// The VBV buffer in kbit for `kbps`: [`VBV_FRAMES`] frame intervals.
    fn vbv_buffer_kbit(&self, kbps: u32) -> c_int {
        let fps = f64::from(self.fps_num.max(1)) / f64::from(self.fps_den.max(1));
        let kbit = f64::from(kbps) * f64::from(VBV_FRAMES) / fps;
        (kbit.ceil() as c_int).max(1)
    }
}

/// What libx264 refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum X264Error {
    /// The configuration cannot be encoded at all.
    #[error("invalid x264 configuration: {0}")]
    Config(String),
    /// A libx264 parameter call failed.
    #[error("libx264 refused {what}")]
    Param {
        /// Which call.
        what: &'static str,
    },
    /// `x264_encoder_open` returned null (it logs why on stderr).
    #[error("libx264 could not open an encoder for {width}x{height}")]
    Open {
        /// Requested width.
        width: u32,
        /// Requested height.
        height: u32,
    },
    /// `x264_encoder_encode` returned an error.
    #[error("x264_encoder_encode failed with {0}")]
    Encode(c_int),
    /// `x264_encoder_reconfig` returned an error.
    #[error("x264_encoder_reconfig failed with {0}")]
    Reconfig(c_int),
    /// A picture does not fit the encoder.
    #[error("bad picture: {0}")]
    Picture(String),
}

/// One I420 picture to encode, borrowed for the duration of [`Encoder::encode`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Picture<'a> {
    /// Y, U and V planes, each at least `stride × (rows − 1) + row width` bytes.
    pub planes: [&'a [u8]; 3],
    /// Bytes from one row to the next, per plane.
    pub strides: [usize; 3],
    /// Caller's timestamp, returned with the encoded picture (the element uses frame numbers).
    pub pts: i64,
    /// Make this picture an IDR.
    pub force_idr: bool,
    /// Quantiser offsets per macroblock in raster order (negative = better quality), exactly
    /// `mb_width × mb_height` of them, or `None` for none.
    pub quant_offsets: Option<&'a [f32]>,
}

/// One encoded access unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Encoded {
    /// All NAL units of the access unit, Annex-B (start codes included), in order.
    pub data: Vec<u8>,
    /// The picture is an IDR.
    pub idr: bool,
    /// x264 calls it a keyframe (an IDR, or a recovery point with intra refresh).
    pub keyframe: bool,
    /// The [`Picture::pts`] it was made from.
    pub pts: i64,
}

/// An open libx264 encoder.
#[derive(Debug)]
pub(crate) struct Encoder {
    handle: NonNull<sys::x264_t>,
    config: Config,
}

// SAFETY: an x264_t has no thread affinity; libx264 only requires that calls on one encoder do
// not overlap, which `&mut self` on every call guarantees.
unsafe impl Send for Encoder {}

/// Fills x264's parameters for interactive streaming from `config`.
fn params(config: &Config) -> Result<sys::x264_param_t, X264Error> {
    let mut param = MaybeUninit::<sys::x264_param_t>::uninit();
    // SAFETY: x264_param_default_preset fully initialises the struct it is given (it starts with
    // x264_param_default, a memset plus defaults); the preset and tune are NUL-terminated
    // literals that outlive the call.
    let ret = unsafe {
        sys::x264_param_default_preset(
            param.as_mut_ptr(),
            c"ultrafast".as_ptr(),
            c"zerolatency".as_ptr(),
        )
    };
    if ret < 0 {
        return Err(X264Error::Param {
            what: "preset ultrafast, tune zerolatency",
        });
    }
    // SAFETY: initialised by the successful call above.
    let mut p = unsafe { param.assume_init() };
    let int = |v: u32, what: &str| {
        c_int::try_from(v).map_err(|_| X264Error::Config(format!("{what} {v} is too large")))
    };

    p.i_log_level = sys::X264_LOG_WARNING as c_int;
    p.i_width = int(config.width, "width")?;
    p.i_height = int(config.height, "height")?;
    p.i_csp = sys::X264_CSP_I420 as c_int;
    p.i_bitdepth = 8;
    p.i_fps_num = config.fps_num.max(1);
    p.i_fps_den = config.fps_den.max(1);
    p.i_timebase_num = p.i_fps_den;
    p.i_timebase_den = p.i_fps_num;

    // Zero latency: every picture comes out of the call that took it in.
    p.i_threads = int(config.threads.max(1), "threads")?;
    p.b_sliced_threads = 1;
    p.i_sync_lookahead = 0;
    p.rc.i_lookahead = 0;
    p.rc.b_mb_tree = 0;
    p.b_vfr_input = 0;
    p.i_bframe = 0;
    // No scene-cut IDRs: a keyframe costs several frames' worth of bits, so only the key-int
    // limit and explicit requests (PLI) make one.
    p.i_scenecut_threshold = 0;
    p.i_keyint_max = int(config.key_int_max.max(1), "key-int-max")?;
    p.b_intra_refresh = c_int::from(config.intra_refresh);

    // Quant offsets need AQ on (see AQ_STRENGTH).
    p.rc.i_aq_mode = sys::X264_AQ_VARIANCE as c_int;
    p.rc.f_aq_strength = AQ_STRENGTH;

    // CBR-like: ABR with the VBV maximum at the target and a buffer of a frame interval or two.
    // libx264 changes the bitrate at run time (x264_encoder_reconfig) only in this mode.
    let kbps = int(config.bitrate_kbps.max(1), "bitrate")?;
    p.rc.i_rc_method = sys::X264_RC_ABR as c_int;
    p.rc.i_bitrate = kbps;
    p.rc.i_vbv_max_bitrate = kbps;
    p.rc.i_vbv_buffer_size = config.vbv_buffer_kbit(config.bitrate_kbps);

    // Annex-B byte stream, SPS/PPS in front of every IDR, no access unit delimiters.
    p.b_annexb = 1;
    p.b_repeat_headers = 1;
    p.b_aud = 0;

    p.vui.i_colorprim = VUI_BT601;
    p.vui.i_transfer = VUI_BT601;
    p.vui.i_colmatrix = VUI_BT601;
    p.vui.b_fullrange = 0;

    p.analyse.b_psnr = 0;
    p.analyse.b_ssim = 0;

    // SAFETY: `p` is an initialised parameter struct and the profile a NUL-terminated literal.
    let ret = unsafe { sys::x264_param_apply_profile(&mut p, c"baseline".as_ptr()) };
    if ret < 0 {
        return Err(X264Error::Param {
            what: "profile baseline",
        });
    }
    // Constrained baseline, which every browser decodes: no CABAC, no 8x8 transform.
    p.b_cabac = 0;
    p.analyse.b_transform_8x8 = 0;
    Ok(p)
}

impl Encoder {
    /// Opens an encoder for `config`.
    pub fn open(config: Config) -> Result<Self, X264Error> {
        if config.width == 0
            || config.height == 0
            || !config.width.is_multiple_of(2)
            || !config.height.is_multiple_of(2)
        {
            return Err(X264Error::Config(format!(
                "size {}x{} must be non-zero and even for 4:2:0",
                config.width, config.height
            )));
        }
        let mut p = params(&config)?;
        // SAFETY: `p` is fully initialised; x264_encoder_open copies what it needs from it and
        // keeps no pointer to it. The strings it points to (none set by us) are x264's own.
        let handle = unsafe { sys::x264_encoder_open(&mut p) };
        let handle = NonNull::new(handle).ok_or(X264Error::Open {
            width: config.width,
            height: config.height,
        })?;
        Ok(Self { handle, config })
    }

    /// The configuration in effect (with the bitrate last set).
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The largest number of pictures libx264 may hold back before output (0 when nothing
    /// buffers, which is what this configuration is for).
    pub fn max_delayed_frames(&mut self) -> usize {
        // SAFETY: the handle is a live encoder owned by `self`.
        let n = unsafe { sys::x264_encoder_maximum_delayed_frames(self.handle.as_ptr()) };
        usize::try_from(n).unwrap_or(0)
    }

    /// Pictures taken in but not yet output.
    pub fn delayed_frames(&mut self) -> usize {
        // SAFETY: the handle is a live encoder owned by `self`.
        let n = unsafe { sys::x264_encoder_delayed_frames(self.handle.as_ptr()) };
        usize::try_from(n).unwrap_or(0)
    }

    /// Changes the target bitrate from the next picture on, without a keyframe.
    pub fn set_bitrate(&mut self, kbps: u32) -> Result<(), X264Error> {
        let kbit = c_int::try_from(kbps.max(1))
            .map_err(|_| X264Error::Config(format!("bitrate {kbps} is too large")))?;
        let mut param = MaybeUninit::<sys::x264_param_t>::uninit();
        // SAFETY: x264_encoder_parameters memcpys the encoder's whole parameter struct into the
        // pointer, which is valid for writes of one x264_param_t.
        unsafe { sys::x264_encoder_parameters(self.handle.as_ptr(), param.as_mut_ptr()) };
        // SAFETY: fully written by the call above.
        let mut p = unsafe { param.assume_init() };
        p.rc.i_bitrate = kbit;
        p.rc.i_vbv_max_bitrate = kbit;
        p.rc.i_vbv_buffer_size = self.config.vbv_buffer_kbit(kbps);
        // SAFETY: `p` is a valid parameter struct whose pointers are the encoder's own (not
        // freed: we never call x264_param_cleanup on this copy); reconfig copies fields from it.
        let ret = unsafe { sys::x264_encoder_reconfig(self.handle.as_ptr(), &mut p) };
        if ret < 0 {
            return Err(X264Error::Reconfig(ret));
        }
        self.config.bitrate_kbps = kbps;
        Ok(())
    }

    /// Encodes `picture`, or with `None` drains one delayed picture. Returns the access unit
    /// that came out, if any.
    pub fn encode(&mut self, picture: Option<&Picture<'_>>) -> Result<Option<Encoded>, X264Error> {
        let mut pic_in = MaybeUninit::<sys::x264_picture_t>::zeroed();
        // SAFETY: the pointer is valid for writes of one x264_picture_t; x264_picture_init sets
        // every field to its default.
        unsafe { sys::x264_picture_init(pic_in.as_mut_ptr()) };
        // SAFETY: initialised just above.
        let mut pic_in = unsafe { pic_in.assume_init() };
        if let Some(picture) = picture {
            self.check(picture)?;
            pic_in.img.i_csp = sys::X264_CSP_I420 as c_int;
            pic_in.img.i_plane = 3;
            for i in 0..3 {
                pic_in.img.i_stride[i] = c_int::try_from(picture.strides[i])
                    .map_err(|_| X264Error::Picture(format!("stride {i} too large")))?;
                // libx264 only reads the input planes (it copies them into its own frame), so
                // the const-to-mut cast never leads to a write through a shared reference.
                pic_in.img.plane[i] = picture.planes[i].as_ptr().cast_mut();
            }
            pic_in.i_type = if picture.force_idr {
                sys::X264_TYPE_IDR as c_int
            } else {
                sys::X264_TYPE_AUTO as c_int
            };
            pic_in.i_pts = picture.pts;
            if let Some(offsets) = picture.quant_offsets {
                pic_in.prop.quant_offsets = offsets.as_ptr().cast_mut();
                pic_in.prop.quant_offsets_free = None;
            }
        }
        let mut pic_out = MaybeUninit::<sys::x264_picture_t>::zeroed();
        let mut nals: *mut sys::x264_nal_t = ptr::null_mut();
        let mut n_nals: c_int = 0;
        let pic_in_ptr = if picture.is_some() {
            &mut pic_in as *mut sys::x264_picture_t
        } else {
            ptr::null_mut()
        };
        // SAFETY: the handle is live and only used through `&mut self`; `pic_in_ptr` is null
        // (drain) or points at a picture whose planes were checked by `check` to cover the
        // picture x264 reads (stride × (rows − 1) + width bytes each), and whose quant offsets
        // hold exactly one float per macroblock. x264 copies both before returning (see the
        // module docs), and they outlive this call. The out-pointers are valid for writes.
        let size = unsafe {
            sys::x264_encoder_encode(
                self.handle.as_ptr(),
                &mut nals,
                &mut n_nals,
                pic_in_ptr,
                pic_out.as_mut_ptr(),
            )
        };
        if size < 0 {
            return Err(X264Error::Encode(size));
        }
        if size == 0 || nals.is_null() || n_nals <= 0 {
            return Ok(None);
        }
        // SAFETY: on success x264 returned `n_nals` NAL descriptors at `nals`, valid until the
        // next call on this encoder.
        let nals = unsafe { std::slice::from_raw_parts(nals, n_nals as usize) };
        let mut data = Vec::with_capacity(size as usize);
        for nal in nals {
            if nal.p_payload.is_null() || nal.i_payload <= 0 {
                continue;
            }
            // SAFETY: each payload is `i_payload` bytes of x264's output buffer, valid until the
            // next call on this encoder; we copy it now.
            let payload =
                unsafe { std::slice::from_raw_parts(nal.p_payload, nal.i_payload as usize) };
            data.extend_from_slice(payload);
        }
        // SAFETY: x264_encoder_encode fills pic_out whenever it returns NAL units; it was
        // zero-initialised before, which is a valid x264_picture_t in any case.
        let pic_out = unsafe { pic_out.assume_init() };
        Ok(Some(Encoded {
            data,
            idr: pic_out.i_type == sys::X264_TYPE_IDR as c_int,
            keyframe: pic_out.b_keyframe != 0,
            pts: pic_out.i_pts,
        }))
    }

    /// Checks that a picture covers what libx264 will read.
    fn check(&self, picture: &Picture<'_>) -> Result<(), X264Error> {
        let (w, h) = (self.config.width as usize, self.config.height as usize);
        let sizes = [
            (w, h),
            (w.div_ceil(2), h.div_ceil(2)),
            (w.div_ceil(2), h.div_ceil(2)),
        ];
        for (i, (pw, ph)) in sizes.into_iter().enumerate() {
            let stride = picture.strides[i];
            if stride < pw {
                return Err(X264Error::Picture(format!(
                    "plane {i} stride {stride} is less than its width {pw}"
                )));
            }
            let needed = stride * (ph - 1) + pw;
            if picture.planes[i].len() < needed {
                return Err(X264Error::Picture(format!(
                    "plane {i} is {} bytes, needs {needed}",
                    picture.planes[i].len()
                )));
            }
        }
        if let Some(offsets) = picture.quant_offsets {
            let (mbw, mbh) = self.config.mb_size();
            if offsets.len() != mbw * mbh {
                return Err(X264Error::Picture(format!(
                    "{} quant offsets for {mbw}x{mbh} macroblocks",
                    offsets.len()
                )));
            }
        }
        Ok(())
    }
}

impl Drop for Encoder {
    fn drop(&mut self) {
        // SAFETY: the handle came from x264_encoder_open, is owned by `self` and closed once.
        unsafe { sys::x264_encoder_close(self.handle.as_ptr()) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config {
            width: 64,
            height: 48,
            fps_num: 30,
            fps_den: 1,
            bitrate_kbps: 500,
            key_int_max: 120,
            intra_refresh: false,
            threads: 1,
        }
    }

    #[test]
    fn params_are_interactive_constrained_baseline() {
        let p = params(&config()).expect("params");
        assert_eq!(p.b_cabac, 0);
        assert_eq!(p.i_bframe, 0);
        assert_eq!(p.rc.i_lookahead, 0);
        assert_eq!(p.i_sync_lookahead, 0);
        assert_eq!(p.rc.i_aq_mode, sys::X264_AQ_VARIANCE as c_int);
        assert!(p.rc.f_aq_strength > 0.0);
        assert_eq!(p.rc.i_vbv_max_bitrate, 500);
        assert_eq!(
            p.rc.i_vbv_buffer_size, 67,
            "four frames of 500 kbit/s at 30 fps"
        );
        assert_eq!(p.b_repeat_headers, 1);
        assert_eq!(p.b_annexb, 1);
    }

    #[test]
    fn encodes_drains_and_refuses_short_planes() {
        let mut enc = Encoder::open(config()).expect("open");
        assert_eq!(enc.max_delayed_frames(), 0);
        let y = vec![100u8; 64 * 48];
        let c = vec![128u8; 32 * 24];
        let offsets = vec![-5.0f32; 4 * 3];
        let pic = Picture {
            planes: [&y, &c, &c],
            strides: [64, 32, 32],
            pts: 7,
            force_idr: false,
            quant_offsets: Some(&offsets),
        };
        let out = enc.encode(Some(&pic)).expect("encode").expect("no delay");
        assert!(out.idr && out.keyframe);
        assert_eq!(out.pts, 7);
        assert_eq!(&out.data[..4], &[0, 0, 0, 1]);
        assert_eq!(enc.delayed_frames(), 0);
        assert!(enc.encode(None).expect("drain").is_none());
        enc.set_bitrate(800).expect("reconfig");

        let short = Picture {
            planes: [&y[..100], &c, &c],
            ..pic
        };
        assert!(matches!(
            enc.encode(Some(&short)),
            Err(X264Error::Picture(_))
        ));
        let few = vec![0.0f32; 3];
        let wrong = Picture {
            quant_offsets: Some(&few),
            ..pic
        };
        assert!(matches!(
            enc.encode(Some(&wrong)),
            Err(X264Error::Picture(_))
        ));
    }

    #[test]
    fn odd_sizes_are_refused() {
        let mut c = config();
        c.width = 65;
        assert!(matches!(Encoder::open(c), Err(X264Error::Config(_))));
    }
}
