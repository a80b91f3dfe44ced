//! The vendors and the kinds of vendor account a customer can be linked to.
use std::fmt;
use std::str::FromStr;

use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub enum Vendor {
    Aws,
    Microsoft,
    Simulator,
    /// The MSP itself: its own catalogue items, with no vendor (and no partner account) behind
    /// them.
    Msp,
}

impl Vendor {
    pub fn as_str(self) -> &'static str {
        match self {
            Vendor::Aws => "AWS",
            Vendor::Microsoft => "MICROSOFT",
            Vendor::Simulator => "SIMULATOR",
            Vendor::Msp => "MSP",
        }
    }

    /// The vendor's own id of a partner (MSP) account: its shape per vendor.
    pub fn check_partner_account_id(self, id: &str) -> Result<(), String> {
        match self {
            Vendor::Aws => check_aws_account_id(id),
            Vendor::Microsoft => check_guid(id, "the Microsoft partner tenant id"),
            Vendor::Simulator => check_free_id(id),
            Vendor::Msp => Err("the MSP's own items need no partner account".into()),
        }
    }
}

impl fmt::Display for Vendor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Vendor {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "AWS" => Ok(Vendor::Aws),
            "MICROSOFT" => Ok(Vendor::Microsoft),
            "SIMULATOR" => Ok(Vendor::Simulator),
            "MSP" => Ok(Vendor::Msp),
            other => Err(format!("unknown vendor {other:?}")),
        }
    }
}

/// What a vendor account linked to a customer is; its id format follows from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum VendorAccountKind {
    AwsAccount,
    MicrosoftTenant,
    MicrosoftSubscription,
    SimulatorAccount,
}

impl VendorAccountKind {
    pub fn as_str(self) -> &'static str {
        match self {
            VendorAccountKind::AwsAccount => "AWS_ACCOUNT",
            VendorAccountKind::MicrosoftTenant => "MICROSOFT_TENANT",
            VendorAccountKind::MicrosoftSubscription => "MICROSOFT_SUBSCRIPTION",
            VendorAccountKind::SimulatorAccount => "SIMULATOR_ACCOUNT",
        }
    }

    /// Whether the link names a vendor tenant, covering every account of it that has no link of
    /// its own (rather than one account).
    pub fn is_tenant(self) -> bool {
        matches!(self, VendorAccountKind::MicrosoftTenant)
    }

    pub fn vendor(self) -> Vendor {
        match self {
            VendorAccountKind::AwsAccount => Vendor::Aws,
            VendorAccountKind::MicrosoftTenant | VendorAccountKind::MicrosoftSubscription => {
                Vendor::Microsoft
            }
            VendorAccountKind::SimulatorAccount => Vendor::Simulator,
        }
    }

    pub fn check_account_id(self, id: &str) -> Result<(), String> {
        match self {
            VendorAccountKind::AwsAccount => check_aws_account_id(id),
            VendorAccountKind::MicrosoftTenant => check_guid(id, "a Microsoft customer tenant id"),
            VendorAccountKind::MicrosoftSubscription => check_guid(id, "a subscription id"),
            VendorAccountKind::SimulatorAccount => check_free_id(id),
        }
    }
}

impl FromStr for VendorAccountKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "AWS_ACCOUNT" => Ok(VendorAccountKind::AwsAccount),
            "MICROSOFT_TENANT" => Ok(VendorAccountKind::MicrosoftTenant),
            "MICROSOFT_SUBSCRIPTION" => Ok(VendorAccountKind::MicrosoftSubscription),
            "SIMULATOR_ACCOUNT" => Ok(VendorAccountKind::SimulatorAccount),
            other => Err(format!("unknown vendor account kind {other:?}")),
        }
    }
}

fn check_aws_account_id(id: &str) -> Result<(), String> {
    if id.len() == 12 && id.bytes().all(|b| b.is_ascii_digit()) {
        Ok(())
    } else {
        Err(format!("{id:?} is not an AWS account id (12 digits)"))
    }
}

fn check_guid(id: &str, what: &str) -> Result<(), String> {
    // Partner Center ids are GUIDs in their hyphenated form.
    match Uuid::try_parse(id) {
        Ok(_) if id.len() == 36 => Ok(()),
        _ => Err(format!(
            "{id:?} is not {what} (a GUID such as 3fa85f64-5717-4562-b3fc-2c963f66afa6)"
        )),
    }
}

fn check_free_id(id: &str) -> Result<(), String> {
    let ok = (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{id:?} is not a simulator account id (1 to 64 letters, digits, '-', '_' or '.')"
        ))
    }
}

/// Where an enrolled customer orders and manages the vendor's services.
pub fn portal_url(vendor: Vendor, linked_account: Option<&str>) -> String {
    match (vendor, linked_account) {
        (Vendor::Aws, Some(account)) => format!("https://{account}.signin.aws.amazon.com/console"),
        (Vendor::Aws, None) => "https://console.aws.amazon.com/".to_string(),
        (Vendor::Microsoft, Some(tenant)) => format!("https://portal.azure.com/#@{tenant}"),
        (Vendor::Microsoft, None) => "https://portal.azure.com/".to_string(),
        (Vendor::Simulator, Some(account)) => format!("simulator://accounts/{account}"),
        (Vendor::Simulator, None) => "simulator://accounts".to_string(),
        // The MSP's own items are ordered from the MSP.
        (Vendor::Msp, _) => String::new(),
    }
}
