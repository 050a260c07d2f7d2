//! Which handler runs each job type.

use std::future::Future;
use std::pin::Pin;

use muster_jobs::{CalendarSyncJob, DeploymentJob, NotificationJob, ReportJob};

use crate::failure::JobFailure;
use crate::queue::{Attempt, Handler};
use crate::{Runtime, calendar, deployment, notification, report};

/// Makes `$run` the handler of job type `$job`.
macro_rules! handled_by {
    ($job:ty => $run:path) => {
        impl Handler for $job {
            fn attempt<'a>(
                rt: &'a Runtime,
                job: &'a Self,
                book: &'a mut Attempt,
            ) -> Pin<Box<dyn Future<Output = Result<(), JobFailure>> + Send + 'a>> {
                Box::pin($run(rt, job, book))
            }
        }
    };
}

handled_by!(DeploymentJob => deployment::run_deployment);
handled_by!(NotificationJob => notification::attempt_delivery);
handled_by!(ReportJob => report::build_report);
handled_by!(CalendarSyncJob => calendar::sync_calendar);
