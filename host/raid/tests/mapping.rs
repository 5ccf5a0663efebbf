//! Properties of the address mapping: locate and volume_offset are inverses; split and
//! pieces cover a request exactly, in order, without overlap.

use amf_raid::{Geometry, Level, RangeError, Role};
use proptest::prelude::*;
use shared_regs::limits::{CHUNK_BYTES_MAX, CHUNK_BYTES_MIN};

fn geometry() -> impl Strategy<Value = Geometry> {
    let chunk_shifts = CHUNK_BYTES_MIN.trailing_zeros()..=CHUNK_BYTES_MAX.trailing_zeros();
    (
        any::<bool>(),
        0u32..=29,
        chunk_shifts,
        1u64..=40,
        0u64..4096,
    )
        .prop_map(|(raid6, extra, shift, stripes, tail)| {
            let level = if raid6 { Level::Raid6 } else { Level::Raid5 };
            let members =
                level.members_min() + extra % (level.members_max() - level.members_min() + 1);
            let chunk = 1u32 << shift;
            Geometry::new(level, members, chunk, stripes * u64::from(chunk) + tail).unwrap()
        })
}

fn geometry_and_offset() -> impl Strategy<Value = (Geometry, u64)> {
    geometry().prop_flat_map(|geometry| (Just(geometry), 0..geometry.volume_bytes()))
}

fn geometry_and_request() -> impl Strategy<Value = (Geometry, u64, u64)> {
    geometry_and_offset().prop_flat_map(|(geometry, offset)| {
        let room = geometry.volume_bytes() - offset;
        (
            Just(geometry),
            Just(offset),
            0..=room.min(4 * geometry.stripe_data_bytes()),
        )
    })
}

proptest! {
    #[test]
    fn locate_and_volume_offset_round_trip((geometry, offset) in geometry_and_offset()) {
        let location = geometry.locate(offset).unwrap();
        prop_assert_eq!(geometry.role(location.stripe, location.member), Role::Data(location.data_index));
        prop_assert_eq!(
            location.member_offset,
            location.stripe * u64::from(geometry.chunk_bytes()) + u64::from(location.offset_in_chunk)
        );
        prop_assert!(location.member_offset < geometry.member_used_bytes());
        let back = geometry.volume_offset(location.stripe, location.member, location.offset_in_chunk);
        prop_assert_eq!(back, Some(offset));
    }

    #[test]
    fn every_member_byte_maps_back_unless_parity((geometry, stripe, member, column) in geometry().prop_flat_map(|g| {
        (Just(g), 0..g.stripe_count(), 0..g.members(), 0..g.chunk_bytes())
    })) {
        match geometry.volume_offset(stripe, member, column) {
            Some(offset) => {
                let location = geometry.locate(offset).unwrap();
                prop_assert_eq!((location.stripe, location.member, location.offset_in_chunk), (stripe, member, column));
            }
            None => prop_assert!(matches!(geometry.role(stripe, member), Role::P | Role::Q)),
        }
    }

    #[test]
    fn split_covers_the_request_in_order((geometry, offset, length) in geometry_and_request()) {
        let mut next = offset;
        for extent in geometry.split(offset, length).unwrap() {
            prop_assert!(extent.length() > 0);
            prop_assert_eq!(extent.request_offset(), next - offset);
            let stripe_start = extent.stripe() * geometry.stripe_data_bytes();
            prop_assert_eq!(stripe_start + extent.stripe_offset(), next);
            prop_assert!(extent.stripe_offset() + extent.length() <= geometry.stripe_data_bytes());
            let mut in_extent = 0;
            for piece in geometry.pieces(&extent) {
                prop_assert_eq!(piece.extent_offset, in_extent);
                let location = geometry.locate(next + in_extent).unwrap();
                prop_assert_eq!(location.data_index, piece.data_index);
                prop_assert_eq!(location.member, piece.member);
                prop_assert_eq!(location.offset_in_chunk, piece.columns.start);
                prop_assert_eq!(location.member_offset, piece.member_offset);
                in_extent += u64::from(piece.columns.length());
            }
            prop_assert_eq!(in_extent, extent.length());
            next += extent.length();
        }
        prop_assert_eq!(next, offset + length);
    }

    #[test]
    fn requests_beyond_the_volume_are_refused((geometry, offset, beyond) in geometry_and_offset().prop_flat_map(|(g, o)| {
        (Just(g), Just(o), 1..=u64::MAX - g.volume_bytes())
    })) {
        let volume = geometry.volume_bytes();
        let length = volume - offset + beyond.min(u64::MAX - volume);
        prop_assert!(
            matches!(geometry.split(offset, length), Err(RangeError::RequestBeyondEnd { .. })),
            "split accepted {}+{} of {}", offset, length, volume
        );
        let far = volume.saturating_add(beyond - 1);
        prop_assert!(
            matches!(geometry.locate(far), Err(RangeError::OffsetBeyondEnd { .. })),
            "locate accepted {}", far
        );
    }
}

#[test]
fn boundary_requests() {
    let geometry = Geometry::new(
        Level::Raid5,
        3,
        CHUNK_BYTES_MIN,
        4 * u64::from(CHUNK_BYTES_MIN),
    )
    .unwrap();
    let volume = geometry.volume_bytes();
    assert_eq!(geometry.split(volume, 0).unwrap().count(), 0);
    assert_eq!(geometry.split(0, volume).unwrap().count(), 4);
    assert!(geometry.split(volume - 1, 2).is_err());
    assert!(
        geometry.split(u64::MAX, 2).is_err(),
        "offset + length overflows"
    );
    assert!(geometry.locate(volume).is_err());
    assert!(geometry.stripe_extent(4, 0, 1).is_err());
    assert!(geometry.stripe_extent(0, 0, 0).is_err());
    assert!(
        geometry
            .stripe_extent(0, 1, geometry.stripe_data_bytes())
            .is_err()
    );
}
