//! The placement is Linux md's left-symmetric, checked against literal tables written out
//! by hand (not computed from the formula under test), plus geometry validation.

use amf_raid::{Geometry, GeometryError, Level, Role};
use shared_regs::limits::{CHUNK_BYTES_DEFAULT, CHUNK_BYTES_MAX, CHUNK_BYTES_MIN, MEMBERS_MAX};

fn name(role: Role) -> String {
    match role {
        Role::Data(index) => format!("D{index}"),
        Role::P => "P".to_string(),
        Role::Q => "Q".to_string(),
    }
}

/// Row `s` lists what members 0, 1, ... hold in stripe `s`.
fn assert_table(geometry: &Geometry, table: &[&str]) {
    for (stripe, row) in table.iter().enumerate() {
        let stripe = stripe as u64;
        let roles: Vec<String> = (0..geometry.members())
            .map(|member| name(geometry.role(stripe, member)))
            .collect();
        assert_eq!(roles.join(" "), *row, "stripe {stripe}");
        for (member, expected) in row.split(' ').enumerate() {
            let member = member as u32;
            match expected {
                "P" => assert_eq!(geometry.p_member(stripe), member),
                "Q" => assert_eq!(geometry.q_member(stripe), Some(member)),
                data => {
                    let index: u32 = data[1..].parse().unwrap();
                    assert_eq!(geometry.data_member(stripe, index), member);
                }
            }
        }
    }
}

#[test]
fn raid5_over_4_members_is_md_left_symmetric() {
    let geometry = Geometry::new(Level::Raid5, 4, CHUNK_BYTES_DEFAULT, 8 << 20).unwrap();
    assert_table(
        &geometry,
        &[
            "D0 D1 D2 P",
            "D1 D2 P D0",
            "D2 P D0 D1",
            "P D0 D1 D2",
            "D0 D1 D2 P",
            "D1 D2 P D0",
        ],
    );
    assert_eq!(geometry.q_member(0), None);
}

#[test]
fn raid6_over_5_members_is_md_left_symmetric() {
    let geometry = Geometry::new(Level::Raid6, 5, CHUNK_BYTES_DEFAULT, 8 << 20).unwrap();
    assert_table(
        &geometry,
        &[
            "Q D0 D1 D2 P",
            "D0 D1 D2 P Q",
            "D1 D2 P Q D0",
            "D2 P Q D0 D1",
            "P Q D0 D1 D2",
            "Q D0 D1 D2 P",
        ],
    );
}

#[test]
fn volume_is_the_stripes_data_chunks_in_order() {
    let chunk = CHUNK_BYTES_MIN;
    let geometry = Geometry::new(Level::Raid6, 5, chunk, 6 * u64::from(chunk)).unwrap();
    let chunk = u64::from(chunk);
    // Stripe 2 is "D1 D2 P Q D0": its first volume byte is on member 4.
    let location = geometry.locate(2 * 3 * chunk + 5).unwrap();
    assert_eq!(
        (location.stripe, location.data_index, location.member),
        (2, 0, 4)
    );
    assert_eq!(
        (location.offset_in_chunk, location.member_offset),
        (5, 2 * chunk + 5)
    );
    let location = geometry.locate(2 * 3 * chunk + 2 * chunk).unwrap();
    assert_eq!((location.data_index, location.member), (2, 1));
    assert_eq!(
        geometry.volume_offset(2, 1, 7),
        Some(2 * 3 * chunk + 2 * chunk + 7)
    );
    assert_eq!(geometry.volume_offset(2, 2, 0), None, "P");
    assert_eq!(geometry.volume_offset(2, 3, 0), None, "Q");
}

#[test]
fn geometry_uses_whole_stripes_only() {
    let chunk = CHUNK_BYTES_DEFAULT;
    let geometry = Geometry::new(Level::Raid5, 4, chunk, 10 * u64::from(chunk) + 4095).unwrap();
    assert_eq!(geometry.stripe_count(), 10);
    assert_eq!(geometry.data_chunks(), 3);
    assert_eq!(geometry.stripe_data_bytes(), 3 * u64::from(chunk));
    assert_eq!(geometry.volume_bytes(), 30 * u64::from(chunk));
    assert_eq!(geometry.member_used_bytes(), 10 * u64::from(chunk));
}

#[test]
fn geometry_errors_name_the_field() {
    let chunk = CHUNK_BYTES_DEFAULT;
    let size = 1 << 30;
    assert!(matches!(
        Geometry::new(Level::Raid5, 2, chunk, size),
        Err(GeometryError::MembersOutOfRange { members: 2, .. })
    ));
    assert!(matches!(
        Geometry::new(Level::Raid6, 3, chunk, size),
        Err(GeometryError::MembersOutOfRange { members: 3, .. })
    ));
    assert!(matches!(
        Geometry::new(Level::Raid6, MEMBERS_MAX + 1, chunk, size),
        Err(GeometryError::MembersOutOfRange { .. })
    ));
    assert!(Geometry::new(Level::Raid6, MEMBERS_MAX, chunk, size).is_ok());
    // Both levels span 3 (or 4) ..= MEMBERS_MAX members.
    assert_eq!(Level::Raid5.members_max(), MEMBERS_MAX);
    assert!(Geometry::new(Level::Raid5, MEMBERS_MAX, chunk, size).is_ok());
    assert!(matches!(
        Geometry::new(Level::Raid5, MEMBERS_MAX + 1, chunk, size),
        Err(GeometryError::MembersOutOfRange { .. })
    ));
    assert_eq!(
        Geometry::new(Level::Raid5, 4, 3 * 4096, size),
        Err(GeometryError::ChunkNotPowerOfTwo {
            chunk_bytes: 3 * 4096
        })
    );
    assert!(matches!(
        Geometry::new(Level::Raid5, 4, CHUNK_BYTES_MIN / 2, size),
        Err(GeometryError::ChunkOutOfRange { .. })
    ));
    assert!(matches!(
        Geometry::new(Level::Raid5, 4, CHUNK_BYTES_MAX * 2, size),
        Err(GeometryError::ChunkOutOfRange { .. })
    ));
    assert!(matches!(
        Geometry::new(Level::Raid5, 4, chunk, u64::from(chunk) - 1),
        Err(GeometryError::NoWholeStripe { .. })
    ));
    assert!(matches!(
        Geometry::new(Level::Raid6, MEMBERS_MAX, CHUNK_BYTES_MIN, u64::MAX),
        Err(GeometryError::VolumeTooLarge { .. })
    ));
    let message = Geometry::new(Level::Raid6, 3, chunk, size)
        .unwrap_err()
        .to_string();
    assert!(message.starts_with("members: 3"), "{message}");
}
