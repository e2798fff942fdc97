//! Devices as reporters, their door: a registered device's own credential (a `device` token
//! naming it) publishes its grid's report subject and nothing else, is refused by every gRPC
//! RPC, and stops working when the device is retired. docs/devices.md.

use chrono::Utc;
use tonic::Code;
use whistle_domain::devices::DeviceKind;
use whistle_proto::v1;
use whistle_store::tokens::{NewToken, Refused, Role};
use whistle_wire::{subject, Verb};

use crate::harness::*;

const GRID: &str = "150602001001001";
const OTHER_GRID: &str = "150602001001002";

async fn device_token(stack: &Stack, device: &str) -> Result<String, Refused> {
    let new = NewToken {
        role: Some(Role::Device),
        device_id: Some(device.to_owned()),
        ..Default::default()
    };
    whistle_store::tokens::create(stack.pool(), &new, Utc::now(), &admin())
        .await
        .map(|(_, secret)| secret)
}

#[tokio::test]
async fn a_devices_credential_publishes_only_its_grids_reports() {
    let stack = Stack::command_center().await;
    let device = whistle_store::devices::register(
        stack.pool(),
        "wl-150602001001001-01",
        DeviceKind::WaterLevel,
        &GRID.parse().unwrap(),
        "地下通道水位",
        Utc::now(),
        &admin(),
    )
    .await
    .unwrap();
    assert_eq!(device.status, "active");
    // Registered once; a grid that is not one is refused.
    assert!(whistle_store::devices::register(
        stack.pool(),
        &device.id,
        DeviceKind::Smoke,
        &GRID.parse().unwrap(),
        "",
        Utc::now(),
        &admin(),
    )
    .await
    .is_err());
    assert!(whistle_store::devices::register(
        stack.pool(),
        "smoke-1",
        DeviceKind::Smoke,
        &"150602001".parse().unwrap(),
        "",
        Utc::now(),
        &admin(),
    )
    .await
    .is_err());
    // No credential for a device that is not registered, nor naming a person.
    assert!(matches!(
        device_token(&stack, "nobody").await,
        Err(Refused::Invalid(_))
    ));

    let secret = device_token(&stack, &device.id).await.unwrap();
    let mut client = stack.connect_as(&secret).await;
    let own = subject::report(&GRID.parse().unwrap());
    client.client.publish(own, "probe".into()).await.unwrap();
    client.expect_no_violation().await;
    for refused in [
        subject::report(&OTHER_GRID.parse().unwrap()),
        subject::command(Verb::Comment, "gw-150602001001001"),
        "whistle.event.150602.150602001.incident.reported".to_owned(),
    ] {
        client
            .client
            .publish(refused.clone(), "probe".into())
            .await
            .unwrap();
        client.expect_violation(&refused).await;
    }

    // The gRPC door refuses it whatever the RPC.
    let denied = command_center_on(stack.channel(), &secret)
        .get_session(v1::GetSessionRequest {})
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);

    // Retired, its credential is unknown from then on.
    sqlx::query("UPDATE devices SET status = 'retired' WHERE id = $1")
        .bind(&device.id)
        .execute(stack.pool())
        .await
        .unwrap();
    assert!(
        whistle_store::tokens::authenticate(stack.pool(), &secret, Utc::now())
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        stack
            .count("SELECT count(*) FROM audit_log WHERE action = 'devices.register'")
            .await,
        1
    );
}
