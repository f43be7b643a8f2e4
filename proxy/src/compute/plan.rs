//! What a new server's disks will be, worked out while the client waits: every image,
//! volume and snapshot a create names is looked up (with the caller's rights) and every
//! disk to make is sized, so a mistake is a 400 with Nova's words; [`super::build`] then
//! makes them.
//!
//! Every disk of a server is a volume. The root disk (`vda`) is the block device with boot
//! index 0, or else a new volume cloned from `imageRef`, of the flavor's disk size (at
//! least the image's size and `min_disk`), deleted with the server. OSC's `--image I`
//! sends `imageRef` and an `image`→`local` mapping with boot index 0: that is the same
//! root. When both `imageRef` and a boot-index-0 volume mapping are given, the mapping is
//! the root. Other mappings follow as `vdb`, `vdc`, … (bootable ones by boot index, then
//! the rest in the order given): `volume` as it is, `snapshot` and `image` as new volumes
//! (of `volume_size`, at least the source's size), `blank` as a new empty volume
//! (`blank`→`local`, Nova's ephemeral or swap disk, is a blank volume deleted with the
//! server, sized by `volume_size` or the flavor).

use std::collections::BTreeMap;

use axum::http::StatusCode;
use serde_json::Value;
use stratus_client::compute::Flavor;
use stratus_client::images::Image;
use stratus_client::volume_ops::MAX_SIZE_GB;
use stratus_core::volume::GIB;

use super::build::{DiskSource, PlannedDisk};
use super::create::{Bdm, Source, Spec, BOOT_SEQUENCE};
use super::{bad, NovaError, NovaResult, Req};

/// An image's size in whole GiB (at least 1).
fn image_gb(img: &Image) -> u64 {
    img.virtual_size.unwrap_or(0).div_ceil(GIB).max(1)
}

/// Image `id` if the caller may boot from it: visible, active, of a format volumes are
/// made of, with a known size; else 400 as Nova answers.
async fn bootable_image(r: &Req<'_>, id: &str) -> NovaResult<Image> {
    let img = match r.p.images.store().get(id).await? {
        Some((img, _)) if crate::image::visible_to(&r.caller, &img) => img,
        _ => return Err(bad(format!("Image {id} could not be found."))),
    };
    if img.status != "active" {
        return Err(bad(format!("Image {id} is not active.")));
    }
    let format = img.disk_format.as_deref().unwrap_or("");
    if !matches!(format, "raw" | "qcow2" | "iso") {
        return Err(bad(format!(
            "Image {id} is of disk format '{format}'; servers boot from raw, qcow2 and iso images."
        )));
    }
    if img.virtual_size.is_none() {
        return Err(bad(format!("Image {id} has no known virtual size.")));
    }
    Ok(img)
}

/// A new volume of `size_gb` from `img`: 400 if it is too small (Nova's
/// `VolumeSmallerThanMinDisk`) or too large.
fn check_image_volume_size(img: &Image, size_gb: u64) -> NovaResult<()> {
    let need = img.virtual_size.unwrap_or(0).max(img.min_disk * GIB);
    if size_gb * GIB < need {
        return Err(bad(format!(
            "Volume is smaller than the minimum size specified in image metadata. Volume size is {} bytes, minimum size is {need} bytes.",
            size_gb * GIB
        )));
    }
    check_size(size_gb)
}

fn check_size(size_gb: u64) -> NovaResult<()> {
    if size_gb > MAX_SIZE_GB {
        return Err(bad(format!(
            "Block Device Mapping is Invalid: {size_gb} GiB is larger than the largest volume ({MAX_SIZE_GB} GiB)."
        )));
    }
    Ok(())
}

/// The size of a blank disk in GiB: `volume_size`, or the flavor's ephemeral size; for a
/// swap disk `volume_size` or the flavor's swap, in MiB, rounded up. 0: no size.
pub fn blank_gb(b: &Bdm, flavor: &Flavor) -> u64 {
    match (b.volume_size, b.swap) {
        (Some(mb), true) => mb.div_ceil(1024),
        (None, true) => flavor.swap_mb.div_ceil(1024),
        (Some(gb), false) => gb,
        (None, false) => flavor.ephemeral_gb,
    }
}

/// What [`plan`] found: the disks to make or use, the image the server is booted from
/// (if any) and that image's `hypervisor_type`.
pub struct Plan {
    pub disks: Vec<PlannedDisk>,
    pub image_id: Option<String>,
    pub hypervisor_type: Option<String>,
}

/// Looks up every image, volume and snapshot `spec` names and sizes every disk to make.
pub(crate) async fn plan(r: &Req<'_>, spec: &Spec, flavor: &Flavor) -> NovaResult<Plan> {
    let mut images: BTreeMap<String, Image> = BTreeMap::new();
    let image_ref = match &spec.image_ref {
        Some(id) => {
            let img = bootable_image(r, id).await?;
            images.insert(id.clone(), img.clone());
            Some(img)
        }
        None => None,
    };
    if let Some(img) = &image_ref {
        if img.min_ram > flavor.ram_mb {
            return Err(bad("Flavor's memory is too small for requested image."));
        }
    }
    let cinder = r.cinder();
    let mut disks = Vec::new();
    let root_bdm = spec.root_bdm();
    let mut order: Vec<(&str, Option<&Bdm>)> = vec![("vda", root_bdm)];
    let devices: Vec<String> = (b'b'..=b'z').map(|c| format!("vd{}", c as char)).collect();
    for (b, dev) in spec.other_bdms().into_iter().zip(&devices) {
        order.push((dev, Some(b)));
    }
    for (device, bdm) in order {
        let Some(b) = bdm else {
            // The root from `imageRef` (parse made sure there is one).
            let img = image_ref.as_ref().ok_or_else(|| bad(BOOT_SEQUENCE))?;
            let size_gb = flavor.disk_gb.max(image_gb(img)).max(img.min_disk);
            check_size(size_gb)?;
            disks.push(PlannedDisk {
                source: DiskSource::Image {
                    image: img.id.clone(),
                    size_gb,
                },
                device: device.to_string(),
                boot_index: Some(0),
                delete_on_termination: true,
            });
            continue;
        };
        let boot_index = b.boot_index.map(|i| i as i32);
        let (source, delete_on_termination) = match &b.source {
            Source::Image(id) => {
                if !images.contains_key(id) {
                    images.insert(id.clone(), bootable_image(r, id).await?);
                }
                let img = &images[id];
                let size_gb = b.volume_size.unwrap_or_else(|| image_gb(img));
                check_image_volume_size(img, size_gb)?;
                (
                    DiskSource::Image {
                        image: id.clone(),
                        size_gb,
                    },
                    b.delete_on_termination,
                )
            }
            Source::Volume(id) => {
                let (v, _) = cinder.volume(id).await.map_err(|e| {
                    if e.status == StatusCode::NOT_FOUND {
                        bad(format!(
                            "Block Device Mapping is Invalid: failed to get volume {id}."
                        ))
                    } else {
                        NovaError::from(e)
                    }
                })?;
                if v.status != "available" {
                    return Err(bad(format!(
                        "Invalid volume: volume {id} status must be available, but current status is: {}.",
                        v.status
                    )));
                }
                if b.boot_index == Some(0) && !v.bootable {
                    return Err(bad(format!("Block Device {id} is not bootable.")));
                }
                (DiskSource::Volume(id.clone()), b.delete_on_termination)
            }
            Source::Snapshot(id) => {
                let (s, _) = cinder.snapshot(id).await.map_err(|e| {
                    if e.status == StatusCode::NOT_FOUND {
                        bad(format!(
                            "Block Device Mapping is Invalid: failed to get snapshot {id}."
                        ))
                    } else {
                        NovaError::from(e)
                    }
                })?;
                if s.status != "available" {
                    return Err(bad(format!(
                        "Invalid snapshot: snapshot {id} is {}, not available.",
                        s.status
                    )));
                }
                let size_gb = b.volume_size.unwrap_or(s.size_gb);
                if size_gb < s.size_gb {
                    return Err(bad(format!(
                        "Block Device Mapping is Invalid: volume_size {size_gb} GiB is smaller than snapshot {id} ({} GiB).",
                        s.size_gb
                    )));
                }
                check_size(size_gb)?;
                (
                    DiskSource::Snapshot {
                        snapshot: id.clone(),
                        size_gb,
                    },
                    b.delete_on_termination,
                )
            }
            Source::Blank => {
                let size_gb = blank_gb(b, flavor);
                if size_gb == 0 {
                    return Err(bad(
                        "Block Device Mapping is Invalid: Blank volumes (source: 'blank', dest: 'volume') need to have non-zero size",
                    ));
                }
                check_size(size_gb)?;
                // A local blank disk (ephemeral, swap) lives and dies with the server.
                (
                    DiskSource::Blank { size_gb },
                    b.delete_on_termination || b.local,
                )
            }
        };
        disks.push(PlannedDisk {
            source,
            device: device.to_string(),
            boot_index,
            delete_on_termination,
        });
    }
    // The image booted from: `imageRef`, else that of an image mapping (the root's first).
    let image_id = spec.image_ref.clone().or_else(|| {
        let mut bdms: Vec<&Bdm> = root_bdm.into_iter().collect();
        bdms.extend(spec.other_bdms());
        bdms.iter().find_map(|b| match &b.source {
            Source::Image(id) => Some(id.clone()),
            _ => None,
        })
    });
    let hypervisor_type = image_id
        .as_ref()
        .and_then(|id| images.get(id))
        .and_then(|img| img.properties.get("hypervisor_type"))
        .and_then(Value::as_str)
        .map(str::to_string);
    Ok(Plan {
        disks,
        image_id,
        hypervisor_type,
    })
}
